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

// A --snp-kds-url: https://, or plain http:// only to a loopback address (a stand-in in tests),
// judged on the URL as libcurl parses it (so "http://127.evil.example" and
// "http://localhost@192.0.2.2" are refused), with no user name or password in it.
Status CheckKdsUrl(const std::string& url);

}  // namespace berth::server
