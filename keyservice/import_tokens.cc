#include "keyservice/import_tokens.h"

#include <array>

#include "core/crypto/random.h"

namespace envelope::keyservice {

StatusOr<Bytes> ImportTokens::Add(ImportParameters p) {
  std::array<uint8_t, 16> random;
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomPublicBytes(random));
  Bytes token = {'e', 'i', 't', '1'};
  token.insert(token.end(), random.begin(), random.end());
  std::lock_guard<std::mutex> lock(mu_);
  // The owner's oldest beyond the limit, and any expired, go.
  size_t mine = 0;
  auto oldest = by_token_.end();
  for (auto it = by_token_.begin(); it != by_token_.end();) {
    if (it->second->valid_to <= p.created) {
      it = by_token_.erase(it);
      continue;
    }
    if (it->second->owner == p.owner) {
      ++mine;
      if (oldest == by_token_.end() || it->second->created < oldest->second->created) oldest = it;
    }
    ++it;
  }
  if (mine >= kMaxPerOwner && oldest != by_token_.end()) by_token_.erase(oldest);
  by_token_[std::string(token.begin(), token.end())] =
      std::make_shared<const ImportParameters>(std::move(p));
  return token;
}

std::shared_ptr<const ImportParameters> ImportTokens::Find(ByteView token) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_token_.find(std::string(token.begin(), token.end()));
  return it == by_token_.end() ? nullptr : it->second;
}

}  // namespace envelope::keyservice
