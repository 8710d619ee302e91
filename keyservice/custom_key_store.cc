#include "keyservice/custom_key_store.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/base/coding.h"
#include "core/crypto/random.h"
#include "keyservice/json_output.h"

namespace envelope::keyservice {

using json = nlohmann::json;

std::string PinSecretName(const std::string& store_id) {
  return "custom-key-store-pin:" + store_id;
}

std::string TokenKeyLabel(const std::string& key_id, uint32_t version) {
  return "envelope-keyd/" + key_id + "/v" + std::to_string(version);
}

std::string NewCustomKeyStoreId() {
  uint8_t random[9];
  (void)crypto::RandomBytes(random);
  return "cks-" + HexEncode(ByteView(random, sizeof(random))).substr(0, 17);
}

std::string CustomKeyStoresToJson(const std::vector<CustomKeyStoreRecord>& records) {
  json list = json::array();
  for (const CustomKeyStoreRecord& r : records) {
    list.push_back({{"id", r.id},
                    {"name", r.name},
                    {"cluster_id", r.cluster_id},
                    {"trust_anchor", r.trust_anchor},
                    {"creation_date", r.creation_date},
                    {"connect_wanted", r.connect_wanted}});
  }
  return DumpJson(json{{"record_version", 1}, {"stores", list}});
}

StatusOr<std::vector<CustomKeyStoreRecord>> CustomKeyStoresFromJson(std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::Corruption("custom key store records are not JSON");
  }
  try {
    if (doc.at("record_version").get<int>() != 1) {
      return Status::Corruption("unknown custom key store record version");
    }
    std::vector<CustomKeyStoreRecord> out;
    for (const auto& s : doc.at("stores")) {
      out.push_back({s.at("id").get<std::string>(), s.at("name").get<std::string>(),
                     s.at("cluster_id").get<std::string>(),
                     s.at("trust_anchor").get<std::string>(),
                     s.at("creation_date").get<int64_t>(), s.at("connect_wanted").get<bool>()});
    }
    return out;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("custom key store records: ") + e.what());
  }
}

CustomKeyStores::CustomKeyStores(std::map<std::string, std::string> clusters)
    : clusters_(std::move(clusters)) {}

bool CustomKeyStores::ValidClusterId(const std::string& id) {
  return id.size() >= 19 && id.size() <= 24 && id.rfind("cluster-", 0) == 0 &&
         std::all_of(id.begin(), id.end(), [](unsigned char c) {
           return std::islower(c) || std::isdigit(c) || c == '-';
         });
}

std::vector<CustomKeyStoreRecord> CustomKeyStores::Records() const {
  std::lock_guard lock(mu_);
  return records_;
}

std::optional<CustomKeyStoreRecord> CustomKeyStores::Find(const std::string& store_id) const {
  std::lock_guard lock(mu_);
  for (const auto& r : records_) {
    if (r.id == store_id) return r;
  }
  return std::nullopt;
}

void CustomKeyStores::SetRecords(std::vector<CustomKeyStoreRecord> records) {
  std::sort(records.begin(), records.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  std::lock_guard lock(mu_);
  records_ = std::move(records);
}

CustomKeyStores::State CustomKeyStores::StateOf(const std::string& store_id) const {
  std::lock_guard lock(mu_);
  if (connections_.count(store_id)) return State{"CONNECTED", "", ""};
  if (auto f = failed_.find(store_id); f != failed_.end()) return f->second;
  return State{"DISCONNECTED", "", ""};
}

bool CustomKeyStores::Connected(const std::string& store_id) const {
  std::lock_guard lock(mu_);
  return connections_.count(store_id) > 0;
}

CustomKeyStores::State CustomKeyStores::Connect(const CustomKeyStoreRecord& record,
                                                const crypto::SecretBytes& pin) {
  State state{"CONNECTED", "", ""};
  auto cluster = clusters_.find(record.cluster_id);
  StatusOr<std::unique_ptr<Pkcs11Token>> token =
      Status::NotFound("cluster " + record.cluster_id +
                       " is not attached to this envelope-keyd (--hsm-cluster)");
  if (cluster != clusters_.end()) token = Pkcs11Token::OpenToken(cluster->second, pin);
  if (!token.ok()) {
    const Status& s = token.status();
    state.connection = "FAILED";
    state.error = s.message();
    if (s.code() == StatusCode::kPermissionDenied) {
      state.error_code =
          s.message().find("CKR_PIN_LOCKED") != std::string::npos ? "USER_LOCKED_OUT"
                                                                   : "INVALID_CREDENTIALS";
    } else if (s.code() == StatusCode::kNotFound || s.code() == StatusCode::kUnavailable) {
      state.error_code = "CLUSTER_NOT_FOUND";
    } else {
      state.error_code = "INTERNAL_ERROR";
    }
    spdlog::error("custom key store {} ({}): cannot connect to {}: {} ({})", record.id,
                  record.name, record.cluster_id, state.error, state.error_code);
  } else {
    spdlog::info("custom key store {} ({}): connected to {}, {}", record.id, record.name,
                 record.cluster_id, (*token)->description());
  }
  std::lock_guard lock(mu_);
  if (state.connection == "CONNECTED") {
    auto c = std::make_shared<Connection>();
    c->token = std::shared_ptr<Pkcs11Token>(std::move(*token));
    connections_[record.id] = std::move(c);
    failed_.erase(record.id);
  } else {
    connections_.erase(record.id);
    failed_[record.id] = state;
  }
  return state;
}

void CustomKeyStores::Disconnect(const std::string& store_id) {
  std::shared_ptr<Connection> closing;
  {
    std::lock_guard lock(mu_);
    if (auto it = connections_.find(store_id); it != connections_.end()) {
      closing = std::move(it->second);
      connections_.erase(it);
    }
    failed_.erase(store_id);
  }
  if (closing) spdlog::info("custom key store {}: disconnected", store_id);
  // The session closes when the last request that took it finishes.
}

StatusOr<std::shared_ptr<CustomKeyStores::Connection>> CustomKeyStores::ConnectionOf(
    const std::string& store_id) const {
  std::lock_guard lock(mu_);
  auto it = connections_.find(store_id);
  if (it == connections_.end()) {
    auto f = failed_.find(store_id);
    return Status::FailedPrecondition(
        "custom key store " + store_id + " is " +
        (f != failed_.end() ? "FAILED (" + f->second.error_code + ")" : "DISCONNECTED"));
  }
  return it->second;
}

StatusOr<Pkcs11Token::KeyHandle> CustomKeyStores::Handle(Connection& c, const std::string& label) {
  {
    std::lock_guard lock(c.handles_mu);
    if (auto it = c.handles.find(label); it != c.handles.end()) return it->second;
  }
  ENVELOPE_ASSIGN_OR_RETURN(Pkcs11Token::KeyHandle h, c.token->FindKey(label));
  std::lock_guard lock(c.handles_mu);
  c.handles[label] = h;
  return h;
}

Status CustomKeyStores::MakeKey(const std::string& store_id, const std::string& key_id,
                                uint32_t version) {
  ENVELOPE_ASSIGN_OR_RETURN(std::shared_ptr<Connection> c, ConnectionOf(store_id));
  const std::string label = TokenKeyLabel(key_id, version);
  auto existing = Handle(*c, label);
  if (existing.ok()) {
    spdlog::warn("custom key store {}: {} already exists on the token: kept", store_id, label);
    return Status::Ok();
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  ENVELOPE_ASSIGN_OR_RETURN(Pkcs11Token::KeyHandle h, c->token->GenerateKey(label));
  std::lock_guard lock(c->handles_mu);
  c->handles[label] = h;
  return Status::Ok();
}

StatusOr<Bytes> CustomKeyStores::Seal(const std::string& store_id, const std::string& key_id,
                                      uint32_t version, ByteView plaintext, ByteView aad) {
  ENVELOPE_ASSIGN_OR_RETURN(std::shared_ptr<Connection> c, ConnectionOf(store_id));
  ENVELOPE_ASSIGN_OR_RETURN(Pkcs11Token::KeyHandle h, Handle(*c, TokenKeyLabel(key_id, version)));
  return c->token->Seal(h, plaintext, aad);
}

StatusOr<crypto::SecretBytes> CustomKeyStores::Open(const std::string& store_id,
                                                    const std::string& key_id, uint32_t version,
                                                    ByteView sealed, ByteView aad) {
  ENVELOPE_ASSIGN_OR_RETURN(std::shared_ptr<Connection> c, ConnectionOf(store_id));
  ENVELOPE_ASSIGN_OR_RETURN(Pkcs11Token::KeyHandle h, Handle(*c, TokenKeyLabel(key_id, version)));
  return c->token->Open(h, sealed, aad);
}

Status CustomKeyStores::DestroyKey(const std::string& store_id, const std::string& key_id,
                                   uint32_t version) {
  ENVELOPE_ASSIGN_OR_RETURN(std::shared_ptr<Connection> c, ConnectionOf(store_id));
  const std::string label = TokenKeyLabel(key_id, version);
  ENVELOPE_ASSIGN_OR_RETURN(Pkcs11Token::KeyHandle h, Handle(*c, label));
  ENVELOPE_RETURN_IF_ERROR(c->token->DestroyKey(h));
  std::lock_guard lock(c->handles_mu);
  c->handles.erase(label);
  return Status::Ok();
}

}  // namespace envelope::keyservice
