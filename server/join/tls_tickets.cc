#include "server/join/tls_tickets.h"

#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cctype>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace berth::server {
namespace {

using ConfPtr = std::unique_ptr<CONF, decltype(&NCONF_free)>;

// A config value, every character but letters and digits escaped (OpenSSL's config syntax
// takes \c as c), so no value can be read as a variable, a comment or a quote.
std::string Escape(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (!std::isalnum(static_cast<unsigned char>(c))) out += '\\';
    out += c;
  }
  return out;
}

// The system_default settings of the system's openssl.cnf (openssl_conf -> ssl_conf ->
// system_default), in order; none if it has none.
std::vector<std::pair<std::string, std::string>> SystemDefaults() {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<char, void (*)(char*)> path(CONF_get1_default_config_file(),
                                             [](char* p) { OPENSSL_free(p); });
  ConfPtr conf(NCONF_new_ex(nullptr, nullptr), NCONF_free);
  long line = 0;
  if (path == nullptr || conf == nullptr || NCONF_load(conf.get(), path.get(), &line) != 1) {
    ERR_clear_error();
    return out;
  }
  const char* section = NCONF_get_string(conf.get(), nullptr, "openssl_conf");
  if (section != nullptr) section = NCONF_get_string(conf.get(), section, "ssl_conf");
  if (section != nullptr) section = NCONF_get_string(conf.get(), section, "system_default");
  STACK_OF(CONF_VALUE)* values = section ? NCONF_get_section(conf.get(), section) : nullptr;
  for (int i = 0; values != nullptr && i < sk_CONF_VALUE_num(values); ++i) {
    const CONF_VALUE* v = sk_CONF_VALUE_value(values, i);
    if (std::string_view(v->name) != "NumTickets") out.emplace_back(v->name, v->value);
  }
  ERR_clear_error();  // NCONF_get_string queues an error for every name it does not find
  return out;
}

Status Check() {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()),
                                                         SSL_CTX_free);
  if (ctx == nullptr) return Internal("cannot make an SSL_CTX");
  size_t tickets = SSL_CTX_get_num_tickets(ctx.get());
  if (tickets != 0) {
    return FailedPrecondition("OpenSSL still issues " + std::to_string(tickets) +
                              " TLS session tickets per connection after NumTickets = 0");
  }
  return OkStatus();
}

}  // namespace

Status DisableTlsSessionTickets() {
  // The system's configuration first (once per process): loaded later, its ssl_conf would
  // replace this one.
  if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, nullptr) != 1) {
    return Internal("OpenSSL did not initialise");
  }
  if (Check().ok()) return OkStatus();
  std::string text =
      "openssl_conf = berthd\n[berthd]\nssl_conf = berthd_ssl\n"
      "[berthd_ssl]\nsystem_default = berthd_tls\n[berthd_tls]\n";
  for (const auto& [name, value] : SystemDefaults()) text += name + " = " + Escape(value) + "\n";
  text += "NumTickets = 0\n";

  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free);
  ConfPtr conf(NCONF_new_ex(nullptr, nullptr), NCONF_free);
  long line = 0;
  if (bio == nullptr || conf == nullptr || NCONF_load_bio(conf.get(), bio.get(), &line) != 1) {
    ERR_clear_error();
    return Internal("cannot parse berthd's OpenSSL settings (line " + std::to_string(line) + ")");
  }
  OPENSSL_load_builtin_modules();
  if (CONF_modules_load(conf.get(), nullptr, 0) <= 0) {
    const char* error = ERR_reason_error_string(ERR_peek_last_error());
    std::string reason = error != nullptr ? error : "no reason given";
    ERR_clear_error();
    return Internal("OpenSSL refused berthd's TLS settings: " + reason);
  }
  return Check();
}

}  // namespace berth::server
