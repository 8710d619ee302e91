// Load generator for envelope-keyd: N client threads, each with its own
// keep-alive connection (its own KmsClient), call one operation in a loop
// for a fixed time through the project's client library, the same path the
// filesystem uses. Prints one JSON line: throughput and latency quantiles.
//
//   keyd_load --endpoint unix:/path|http://127.0.0.1:P|https://HOST:P
//             [--ca-file PEM] --key KEY --op Decrypt|GenerateDataKey
//             --clients N --seconds S
//
// Over http(s), requests are SigV4-signed with the credentials the AWS CLI
// would find (kms/aws_config.h: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ...).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "kms/aws_config.h"
#include "kms/endpoint.h"
#include "kms/kms_client.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace kms = envelope::kms;

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint, key, op = "Decrypt", ca_file;
  int clients = 1;
  double seconds = 5;
  CLI::App app{"keyd_load"};
  app.add_option("--endpoint", endpoint)->required();
  app.add_option("--key", key)->required();
  app.add_option("--ca-file", ca_file, "https: the CA bundle to trust");
  app.add_option("--op", op)->check(CLI::IsMember({"Decrypt", "GenerateDataKey"}));
  app.add_option("--clients", clients)->check(CLI::Range(1, 256));
  app.add_option("--seconds", seconds);
  CLI11_PARSE(app, argc, argv);

  auto ep = kms::ParseEndpoint(endpoint);
  if (!ep.ok()) {
    std::fprintf(stderr, "keyd_load: %s\n", ep.status().ToString().c_str());
    return 1;
  }
  const std::map<std::string, std::string> context = {{"volume", "bench"}, {"file", "f"}};

  // One blob to decrypt over and over (a DEK wrapped for a file header).
  // Options hold credentials (move-only), so each client gets its own.
  auto new_client = [&]() -> envelope::StatusOr<std::unique_ptr<kms::KmsClient>> {
    kms::KmsClient::Options options;
    options.endpoint = *ep;
    options.ca_file = ca_file;
    if (ep->kind != kms::Endpoint::kUnix) {
      ENVELOPE_ASSIGN_OR_RETURN(options.credentials, kms::ResolveAwsCredentials());
      ENVELOPE_ASSIGN_OR_RETURN(options.region, kms::AwsSigningRegion(*ep));
    }
    return kms::KmsClient::New(std::move(options));
  };
  auto setup = new_client();
  if (!setup.ok()) {
    std::fprintf(stderr, "keyd_load: %s\n", setup.status().ToString().c_str());
    return 1;
  }
  auto dk = (*setup)->GenerateDataKey(key, context);
  if (!dk.ok()) {
    std::fprintf(stderr, "keyd_load: %s\n", dk.status().ToString().c_str());
    return 1;
  }
  const envelope::Bytes blob = dk->ciphertext_blob;

  std::atomic<bool> go{false}, stop{false};
  std::atomic<int> failures{0};
  std::vector<std::vector<double>> latencies(clients);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      auto client = new_client();
      if (!client.ok()) {
        ++failures;
        return;
      }
      auto& lat = latencies[i];
      lat.reserve(1 << 20);
      while (!go) std::this_thread::yield();
      while (!stop) {
        auto t0 = Clock::now();
        bool ok = op == "Decrypt" ? (*client)->Decrypt(blob, context, key).ok()
                                  : (*client)->GenerateDataKey(key, context).ok();
        auto t1 = Clock::now();
        if (!ok) ++failures;
        lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
    });
  }
  auto start = Clock::now();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();

  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto quantile = [&](double q) {
    return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<size_t>(q * all.size()))];
  };
  std::printf(
      "{\"op\":\"%s\",\"clients\":%d,\"requests\":%zu,\"failures\":%d,\"seconds\":%.2f,"
      "\"per_second\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f}\n",
      op.c_str(), clients, all.size(), failures.load(), elapsed, all.size() / elapsed,
      quantile(0.50), quantile(0.99));
  return failures.load() == 0 ? 0 : 1;
}
