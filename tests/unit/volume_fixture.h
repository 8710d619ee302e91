// A volume in a temporary cipherdir over FakeKeyService, for the unit
// tests of fs::Volume, rotate and fsck: files are created and read through
// the Volume API the mount uses, without FUSE or a daemon.
#ifndef ENVELOPE_TESTS_UNIT_VOLUME_FIXTURE_H_
#define ENVELOPE_TESTS_UNIT_VOLUME_FIXTURE_H_

#include <memory>
#include <string>

#include "fs/volume.h"
#include "kms/fake_key_service.h"
#include "tests/unit/test_files.h"

namespace envelope::testing {

class VolumeFixture {
 public:
  // `labelled`: envelope-keyd-like blobs (VersionOf answers) or opaque
  // (AWS-like) ones.
  explicit VolumeFixture(bool labelled, bool dek_in_xattr = false);

  kms::FakeKeyService& kms() { return *kms_; }
  std::shared_ptr<kms::FakeKeyService> kms_ptr() { return kms_; }
  const std::string& key() const { return key_; }
  const std::string& cipherdir() const { return dir_.path(); }

  // Opens the volume pinned to `keys` (default: the volume's key).
  StatusOr<std::unique_ptr<fs::Volume>> Open(std::vector<std::string> keys = {},
                                             std::vector<std::string> also_trust = {});

  // A file in the volume's top directory, through the Volume API.
  Status WriteFile(fs::Volume& volume, const std::string& name, const std::string& content);
  StatusOr<std::string> ReadFile(fs::Volume& volume, const std::string& name);
  // The wrapped DEK of `name`'s active slot (or xattr).
  StatusOr<Bytes> WrappedDek(fs::Volume& volume, const std::string& name);
  // Writes `blob` as `name`'s wrapped DEK, as a rotation would (another
  // file's blob makes a file whose key the service will not re-wrap).
  Status ReplaceWrappedDek(fs::Volume& volume, const std::string& name, ByteView blob);
  // Overwrites the first bytes of `name`'s backing file (a damaged header).
  Status DamageHeader(fs::Volume& volume, const std::string& name);

 private:
  StatusOr<std::string> BackingName(fs::Volume& volume, const std::string& name);

  TempDir dir_;
  std::shared_ptr<kms::FakeKeyService> kms_;
  std::string key_;
};

}  // namespace envelope::testing

#endif  // ENVELOPE_TESTS_UNIT_VOLUME_FIXTURE_H_
