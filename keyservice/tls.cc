#include "keyservice/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/base/fd_io.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

namespace asio = boost::asio;

namespace {

// TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD cipher, the
// "intermediate" list of Mozilla's server-side TLS guidelines. TLS 1.3
// suites are all ECDHE/DHE + AEAD, and OpenSSL's default set is kept.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Session resumption with client certificates needs a session id context
// (OpenSSL refuses to resume without one when peers are verified).
constexpr char kSessionIdContext[] = "envelope-keyd";

// A PEM private key is a few KiB; anything much larger is not one.
constexpr off_t kMaxKeyFileSizeInBytes = 64 * 1024;

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct BignumFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
struct OpensslStringFree {
  void operator()(char* s) const { OPENSSL_free(s); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* names) const { GENERAL_NAMES_free(names); }
};

std::string Rfc2253(const X509_NAME* name) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr) return "";
  // RFC 2253: most specific RDN first, special characters and every byte
  // outside printable ASCII escaped, so the result is ASCII.
  if (X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "";
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<size_t>(size)) : std::string();
}

std::string SerialHex(const X509* cert) {
  std::unique_ptr<BIGNUM, BignumFree> bn(
      ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "";
  std::unique_ptr<char, OpensslStringFree> hex(BN_bn2hex(bn.get()));
  return hex ? std::string(hex.get()) : std::string();
}

std::vector<std::string> SubjectAltNames(const X509* cert) {
  std::vector<std::string> out;
  if (cert == nullptr) return out;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
    if (n->type == GEN_DNS) {
      const ASN1_IA5STRING* dns = n->d.dNSName;
      std::string name(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                       static_cast<size_t>(ASN1_STRING_length(dns)));
      if (!name.empty() && name.find('*') == std::string::npos &&
          name.find('\0') == std::string::npos) {
        out.push_back(std::move(name));
      }
    } else if (n->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = n->d.iPAddress;
      const int length = ASN1_STRING_length(ip);
      char text[INET6_ADDRSTRLEN] = {};
      if (length == 4 && ::inet_ntop(AF_INET, ASN1_STRING_get0_data(ip), text, sizeof(text))) {
        out.emplace_back(text);
      } else if (length == 16 &&
                 ::inet_ntop(AF_INET6, ASN1_STRING_get0_data(ip), text, sizeof(text))) {
        std::string bracketed(1, '[');  // appends: GCC 12's -Wrestrict misfires on "[" + s
        bracketed.append(text).push_back(']');
        out.push_back(std::move(bracketed));
      }
    }
  }
  return out;
}

// Reads the private key file into the secure heap after checking who may
// read it: the daemon's user only.
StatusOr<crypto::SecretBytes> ReadKeyFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) return Status::FromErrno("open --tls-key " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  if (!S_ISREG(st.st_mode)) {
    return Status::FailedPrecondition("--tls-key " + path + " is not a regular file");
  }
  if (st.st_uid != ::geteuid()) {
    return Status::PermissionDenied("--tls-key " + path + " belongs to uid " +
                                    std::to_string(st.st_uid) + ", not to uid " +
                                    std::to_string(::geteuid()) +
                                    " that runs envelope-keyd; chown it");
  }
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied("--tls-key " + path +
                                    " is accessible by group or others; chmod 600 it");
  }
  if (st.st_size <= 0 || st.st_size > kMaxKeyFileSizeInBytes) {
    return Status::InvalidArgument("--tls-key " + path + " is empty or larger than 64 KiB");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes content,
                            crypto::SecretBytes::Zeroed(static_cast<size_t>(st.st_size)));
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), content.mutable_view(), 0));
  if (n != content.size()) return Status::InvalidArgument("--tls-key " + path + " changed while read");
  return content;
}

}  // namespace

TlsContext::TlsContext() : context_(asio::ssl::context::tls_server) {}

StatusOr<std::unique_ptr<TlsContext>> TlsContext::New(const TlsOptions& options) {
  std::unique_ptr<TlsContext> tls(new TlsContext());
  SSL_CTX* ctx = tls->context_.native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_set_session_id_context(
          ctx, reinterpret_cast<const unsigned char*>(kSessionIdContext),
          sizeof(kSessionIdContext) - 1) != 1) {
    return Status::Internal("cannot configure the TLS context");
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_SINGLE_ECDH_USE);
  // An encrypted key is refused rather than prompted for on a terminal.
  boost::system::error_code ec;
  tls->context_.set_password_callback(
      [](std::size_t, asio::ssl::context::password_purpose) { return std::string(); }, ec);

  tls->context_.use_certificate_chain_file(options.cert_file, ec);
  if (ec) {
    return Status::InvalidArgument("--tls-cert " + options.cert_file +
                                   " is not a usable PEM certificate chain: " + ec.message());
  }
  {
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key, ReadKeyFile(options.key_file));
    tls->context_.use_private_key(asio::const_buffer(key.data(), key.size()),
                                  asio::ssl::context::pem, ec);
  }  // the PEM text is wiped here; OpenSSL holds the parsed key
  const bool mismatch = ec && ERR_GET_LIB(static_cast<unsigned long>(ec.value())) == ERR_LIB_X509 &&
                        ERR_GET_REASON(static_cast<unsigned long>(ec.value())) ==
                            X509_R_KEY_VALUES_MISMATCH;
  if (ec && !mismatch) {
    return Status::InvalidArgument("--tls-key " + options.key_file +
                                   " is not a usable unencrypted PEM private key: " +
                                   ec.message());
  }
  if (mismatch || SSL_CTX_check_private_key(ctx) != 1) {
    return Status::InvalidArgument("--tls-key " + options.key_file +
                                   " is not the key of the certificate in --tls-cert " +
                                   options.cert_file);
  }
  tls->server_names_ = SubjectAltNames(SSL_CTX_get0_certificate(ctx));

  if (!options.client_ca_file.empty()) {
    tls->context_.load_verify_file(options.client_ca_file, ec);
    if (ec) {
      return Status::InvalidArgument("--client-ca " + options.client_ca_file +
                                     " is not a usable PEM CA file: " + ec.message());
    }
    // Which CAs the server names in its certificate request.
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.client_ca_file.c_str());
    if (names == nullptr) {
      return Status::InvalidArgument("--client-ca " + options.client_ca_file +
                                     " holds no CA certificate");
    }
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
    // Request a certificate; verify any presented one (a bad one fails the
    // handshake); allow none (SigV4 then authenticates).
    tls->context_.set_verify_mode(asio::ssl::verify_peer, ec);
    if (ec) return Status::Internal("cannot set the TLS verify mode: " + ec.message());
    tls->requests_client_certificates_ = true;
  } else {
    tls->context_.set_verify_mode(asio::ssl::verify_none, ec);
  }
  return tls;
}

std::optional<ClientCertificate> VerifiedClientCertificate(SSL* ssl) {
  if (ssl == nullptr) return std::nullopt;
  const X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return std::nullopt;
  ClientCertificate out;
  out.subject = Rfc2253(X509_get_subject_name(cert));
  if (out.subject.empty()) return std::nullopt;
  out.issuer = Rfc2253(X509_get_issuer_name(cert));
  out.serial = SerialHex(cert);
  return out;
}

}  // namespace envelope::keyservice
