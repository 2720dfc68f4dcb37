// berthd's TLS servers issue no session tickets.
//
// A node connects once or twice per boot, with a key it made for that boot, and never resumes a
// session; a ticket is work for nothing. OpenSSL 3.0 makes it expensive work: each TLS 1.3
// ticket serialises the session, the client's certificate included, then decodes it again
// (construct_stateless_ticket), and the decode of that certificate's key took 16% of berthd's
// CPU per join (BENCHMARKS.md). gRPC does not expose its SSL_CTX, so this goes through
// OpenSSL's configuration: the "system_default" settings every new SSL_CTX starts from. The
// system's own settings (from openssl.cnf's ssl_conf, if it has any) are kept, with
// NumTickets = 0 added; TLS clients ignore NumTickets.
#pragma once

#include "common/status.h"

namespace berth::server {

// Process-wide, before any TLS server is made; idempotent. Checks the result on a fresh
// SSL_CTX: FAILED_PRECONDITION if OpenSSL would still issue tickets.
Status DisableTlsSessionTickets();

}  // namespace berth::server
