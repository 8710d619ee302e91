// The one operation table (kms/operations.h) against envelope-keyd's routes
// and its standard-API output shapes: a row without a handler, a handler
// without a row, or an AWS operation without its output shape fails here.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "keyservice/kms_service.h"
#include "keyservice/standard_api.h"
#include "kms/operations.h"

namespace envelope::keyservice {
namespace {

TEST(OperationTableTest, EveryRowHasAHandlerAndEveryHandlerARow) {
  std::set<std::string> rows;
  for (const kms::Operation& op : kms::Operations()) {
    EXPECT_TRUE(rows.insert(op.target()).second) << "two rows for " << op.target();
    EXPECT_EQ(kms::FindOperation(op.target()), &op) << op.target();
  }
  std::set<std::string> handled;
  for (const std::string& t : KmsService::HandledTargets()) {
    EXPECT_TRUE(handled.insert(t).second) << "two handlers for " << t;
  }
  for (const std::string& t : rows) EXPECT_TRUE(handled.count(t)) << t << " has no handler";
  for (const std::string& t : handled) EXPECT_TRUE(rows.count(t)) << t << " has no row";
}

TEST(OperationTableTest, EveryAwsOperationHasItsOutputShape) {
  for (const kms::Operation& op : kms::Operations()) {
    EXPECT_EQ(IsStandardOperation(op.name), !op.extension) << op.target();
  }
}

TEST(OperationTableTest, LookupsByTarget) {
  EXPECT_EQ(kms::FindOperation("TrentService.Decrypt")->name, "Decrypt");
  EXPECT_TRUE(kms::FindOperation("TrentService.Decrypt")->response_sensitive());
  EXPECT_TRUE(kms::FindOperation("TrentService.Encrypt")->request_sensitive());
  EXPECT_TRUE(kms::FindOperation("TrentService.CreateCustomKeyStore")->request_sensitive());
  EXPECT_TRUE(kms::FindOperation("EnvelopeKeyService.Backup")->response_sensitive());
  EXPECT_TRUE(kms::FindOperation("EnvelopeKeyService.GenerateDataKeys")->idempotent);
  EXPECT_FALSE(kms::FindOperation("TrentService.CreateKey")->idempotent);
  // Each name under its own prefix only.
  EXPECT_EQ(kms::FindOperation("EnvelopeKeyService.Decrypt"), nullptr);
  EXPECT_EQ(kms::FindOperation("TrentService.Backup"), nullptr);
  EXPECT_EQ(kms::FindOperation("Decrypt"), nullptr);
  EXPECT_EQ(kms::FindOperation(""), nullptr);
}

}  // namespace
}  // namespace envelope::keyservice
