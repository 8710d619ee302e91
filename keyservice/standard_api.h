// AWS KMS's published API as far as envelope-keyd implements it: the
// response members of each TrentService operation, from the output shapes
// of botocore's kms service-2.json (API version 2014-11-01). envelope-keyd
// --standard-only answers with these members only, so that a test run
// against it as a stand-in for AWS KMS cannot come to depend on an
// extension field (DescribeKey's CurrentKeyVersion, MinKeyVersion and
// Creator; ListKeyRotations' KeyVersion and Retired) that AWS never sends.
//
// Thread safety: stateless; call from any thread.
#ifndef ENVELOPE_KEYSERVICE_STANDARD_API_H_
#define ENVELOPE_KEYSERVICE_STANDARD_API_H_

#include <string_view>

#include <nlohmann/json.hpp>

namespace envelope::keyservice {

// Whether `operation` (the part after "TrentService.") is an AWS KMS
// operation with an entry in the table.
bool IsStandardOperation(std::string_view operation);

// Removes from `response` (a successful answer to TrentService.<operation>)
// every member that AWS's output shape for `operation` lacks, recursing
// into nested structures and lists of structures. An operation AWS
// answers with an empty structure keeps no member; one not in the table
// loses every member.
void StripToStandardApi(std::string_view operation, nlohmann::json* response);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_STANDARD_API_H_
