// AMD's Key Distribution Service (https://kdsintf.amd.com) over libcurl: where berthd fetches
// the AMD certificates a node did not send (verify/snp_certs.h's SnpKds interface).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "verify/snp_certs.h"

namespace berth::server {

// libcurl against `base_url` ("https://kdsintf.amd.com"; http:// only for a loopback stand-in
// in tests). Thread-safe.
std::unique_ptr<verify::SnpKds> MakeCurlKds(std::string base_url,
                                            std::chrono::milliseconds timeout);

}  // namespace berth::server
