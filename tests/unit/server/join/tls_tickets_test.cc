// berthd's TLS servers issue no session tickets (server/join/tls_tickets.h): a real TLS 1.3
// handshake between two OpenSSL contexts, counting the tickets the client receives, before
// and after. Its own binary: the setting is process-wide.
#include "server/join/tls_tickets.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <cstdlib>
#include <memory>
#include <string_view>

#include "common/crypto.h"

namespace berth::server {
namespace {

using CtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;
using SslPtr = std::unique_ptr<SSL, decltype(&SSL_free)>;

int g_tickets = 0;

int CountTicket(SSL*, SSL_SESSION*) {
  ++g_tickets;
  return 0;  // not kept
}

// A TLS 1.3 server with a fresh P-256 certificate, made now (so it takes the settings now).
CtxPtr MakeServer() {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()), SSL_CTX_free);
  auto key = GenerateP256Key();
  auto cert = IssueCert(CertSpec{.common_name = "berthd"}, key->get(), nullptr, key->get());
  EXPECT_TRUE(key.ok() && cert.ok());
  EXPECT_EQ(SSL_CTX_use_certificate(ctx.get(), cert->get()), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), key->get()), 1);
  return ctx;
}

// Handshakes a client with `server` over an in-memory pipe, then reads what the server sent
// after the handshake: the number of session tickets the client was given.
int TicketsGiven(SSL_CTX* server) {
  CtxPtr client(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX_set_min_proto_version(client.get(), TLS1_3_VERSION);
  SSL_CTX_set_session_cache_mode(client.get(), SSL_SESS_CACHE_CLIENT);
  SSL_CTX_sess_set_new_cb(client.get(), CountTicket);
  SslPtr c(SSL_new(client.get()), SSL_free), s(SSL_new(server), SSL_free);
  BIO *cb = nullptr, *sb = nullptr;
  EXPECT_EQ(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
  SSL_set_bio(c.get(), cb, cb);
  SSL_set_bio(s.get(), sb, sb);
  SSL_set_connect_state(c.get());
  SSL_set_accept_state(s.get());
  g_tickets = 0;
  bool client_done = false, server_done = false;
  for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
    if (!client_done) client_done = SSL_do_handshake(c.get()) == 1;
    if (!server_done) server_done = SSL_do_handshake(s.get()) == 1;
  }
  EXPECT_TRUE(client_done && server_done);
  EXPECT_EQ(SSL_version(c.get()), TLS1_3_VERSION);
  char byte;
  EXPECT_LE(SSL_read(c.get(), &byte, 1), 0);  // nothing but post-handshake messages
  EXPECT_EQ(SSL_get_error(c.get(), -1), SSL_ERROR_WANT_READ);
  return g_tickets;
}

TEST(TlsTicketsTest, AfterTheSettingNoServerIssuesTicketsAndTheSystemSettingsStay) {
  // The system's openssl.cnf, with settings of its own for every TLS context (SECLEVEL 3, TLS
  // 1.3 at least): ctest sets OPENSSL_CONF to testdata/openssl-system.cnf.
  const char* conf = std::getenv("OPENSSL_CONF");
  ASSERT_TRUE(conf != nullptr && std::string_view(conf).ends_with("/openssl-system.cnf"))
      << "run through ctest, which sets OPENSSL_CONF";
  CtxPtr before = MakeServer();
  ASSERT_EQ(SSL_CTX_get_security_level(before.get()), 3);  // the system's file was read
  EXPECT_EQ(SSL_CTX_get_num_tickets(before.get()), 2u);    // OpenSSL's default
  EXPECT_EQ(TicketsGiven(before.get()), 2);

  Status st = DisableTlsSessionTickets();
  ASSERT_TRUE(st.ok()) << st.ToString();
  CtxPtr after = MakeServer();
  EXPECT_EQ(SSL_CTX_get_num_tickets(after.get()), 0u);
  EXPECT_EQ(TicketsGiven(after.get()), 0);
  EXPECT_EQ(SSL_CTX_get_security_level(after.get()), 3);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(after.get()), TLS1_3_VERSION);
  // A context made before keeps what it was made with.
  EXPECT_EQ(TicketsGiven(before.get()), 2);

  EXPECT_TRUE(DisableTlsSessionTickets().ok());  // idempotent
  EXPECT_EQ(SSL_CTX_get_num_tickets(MakeServer().get()), 0u);
}

}  // namespace
}  // namespace berth::server
