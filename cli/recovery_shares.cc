#include "cli/recovery_shares.h"

extern "C" {
#include <libgfshare.h>
}
#include <openssl/rand.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <sstream>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/recovery.h"

namespace berth::cli {

namespace {

// libgfshare draws its polynomial coefficients from this hook, and overwrites its buffers with
// it when a context is freed (so it must be set before any context is made); a CSPRNG.
void FillRandom(unsigned char* buffer, unsigned int size) {
  if (RAND_bytes(buffer, static_cast<int>(size)) != 1) std::abort();  // no weak fallback
}

void UseOpenSslRandom() {
  static std::once_flag once;
  std::call_once(once, [] { gfshare_fill_rand = FillRandom; });
}

// A checksum of the share's own fields, so a mistyped file is named as such.
std::string Checksum(const RecoveryShare& s) {
  std::string text = s.cluster_id + "|" + std::to_string(s.threshold) + "|" +
                     std::to_string(s.count) + "|" + std::to_string(s.index) + "|" +
                     s.recovery_key_sha256 + "|";
  Bytes data = ToBytes(text);
  data.insert(data.end(), s.share.data(), s.share.data() + s.share.size());
  Bytes sum = Sha256(data);
  WipeMemory(data.data(), data.size());
  return HexEncode(sum).substr(0, 16);
}

}  // namespace

Result<std::vector<RecoveryShare>> SplitRecoverySecret(const SecretBytes& secret,
                                                       const std::string& cluster_id,
                                                       int threshold, int count) {
  if (threshold < 2 || count < threshold || count > 255) {
    return InvalidArgument("recovery shares: need 2 <= threshold (" + std::to_string(threshold) +
                           ") <= count (" + std::to_string(count) + ") <= 255");
  }
  BERTH_ASSIGN_OR_RETURN(Bytes public_key, recovery::PublicKeyOf(secret));
  UseOpenSslRandom();
  std::vector<unsigned char> numbers(count);
  for (int i = 0; i < count; ++i) numbers[i] = static_cast<unsigned char>(i + 1);
  gfshare_ctx* ctx = gfshare_ctx_init_enc(numbers.data(), count, static_cast<unsigned char>(threshold),
                                          static_cast<unsigned int>(secret.size()));
  if (ctx == nullptr) return Internal("libgfshare could not make a context");
  SecretBytes copy = secret.Clone();  // libgfshare takes a non-const buffer
  gfshare_ctx_enc_setsecret(ctx, copy.data());
  std::vector<RecoveryShare> out;
  for (int i = 0; i < count; ++i) {
    RecoveryShare s;
    s.cluster_id = cluster_id;
    s.threshold = threshold;
    s.count = count;
    s.index = i + 1;
    s.recovery_key_sha256 = recovery::Fingerprint(public_key);
    s.share = SecretBytes(secret.size());
    gfshare_ctx_enc_getshare(ctx, static_cast<unsigned char>(i), s.share.data());
    out.push_back(std::move(s));
  }
  gfshare_ctx_free(ctx);  // libgfshare wipes its coefficients and buffers when freed
  return out;
}

SecretBytes FormatShare(const RecoveryShare& s) {
  std::string text =
      "# berth recovery share " + std::to_string(s.index) + " of " + std::to_string(s.count) +
      " for cluster " + s.cluster_id + "; any " + std::to_string(s.threshold) +
      " shares open every control plane's state disk.\n"
      "# Keep it offline. Give it to berthctl recover only for a node whose attestation you "
      "trust.\n"
      "berth-recovery-share: v1\n"
      "cluster: " + s.cluster_id + "\n"
      "threshold: " + std::to_string(s.threshold) + "\n"
      "count: " + std::to_string(s.count) + "\n"
      "index: " + std::to_string(s.index) + "\n"
      "recovery-key-sha256: " + s.recovery_key_sha256 + "\n"
      "share: " + HexEncode(s.share.span()) + "\n"
      "checksum: " + Checksum(s) + "\n";
  return SecretBytes::TakeFrom(text);
}

Result<RecoveryShare> ParseShare(std::string_view text, const std::string& where) {
  RecoveryShare s;
  std::string version, checksum;
  bool have_share = false;
  int line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    size_t colon = line.find(": ");
    auto bad = [&](const std::string& why) {
      return InvalidArgument(where + ":" + std::to_string(line_number) + ": " + why);
    };
    if (colon == std::string_view::npos) return bad("expected \"key: value\"");
    std::string key(line.substr(0, colon));
    std::string value(line.substr(colon + 2));
    auto number = [&](int& out) -> Status {
      try {
        size_t used = 0;
        out = std::stoi(value, &used);
        if (used != value.size()) throw std::invalid_argument("");
      } catch (const std::exception&) {
        return bad(key + " is not a number");
      }
      return OkStatus();
    };
    if (key == "berth-recovery-share") {
      version = value;
    } else if (key == "cluster") {
      s.cluster_id = value;
    } else if (key == "threshold") {
      BERTH_RETURN_IF_ERROR(number(s.threshold));
    } else if (key == "count") {
      BERTH_RETURN_IF_ERROR(number(s.count));
    } else if (key == "index") {
      BERTH_RETURN_IF_ERROR(number(s.index));
    } else if (key == "recovery-key-sha256") {
      s.recovery_key_sha256 = value;
    } else if (key == "share") {
      auto bytes = HexDecode(value);
      WipeString(value);
      if (!bytes.ok() || bytes->empty()) return bad("share is not hex");
      s.share = SecretBytes(bytes->data(), bytes->size());
      WipeMemory(bytes->data(), bytes->size());
      have_share = true;
    } else if (key == "checksum") {
      checksum = value;
    } else {
      return bad("unknown key \"" + key + "\"");
    }
  }
  if (version != "v1") return InvalidArgument(where + ": not a berth recovery share (v1)");
  if (!have_share || s.cluster_id.empty() || s.recovery_key_sha256.size() != 64 || checksum.empty()) {
    return InvalidArgument(where + ": a recovery share needs cluster, threshold, count, index, "
                           "recovery-key-sha256, share and checksum");
  }
  if (s.threshold < 2 || s.count < s.threshold || s.count > 255 || s.index < 1 ||
      s.index > s.count) {
    return InvalidArgument(where + ": share " + std::to_string(s.index) + " of " +
                           std::to_string(s.count) + " with threshold " +
                           std::to_string(s.threshold) + " is impossible");
  }
  if (checksum != Checksum(s)) {
    return InvalidArgument(where + ": the share is damaged (its checksum does not match)");
  }
  return s;
}

Result<SecretBytes> CombineRecoveryShares(const std::vector<RecoveryShare>& shares) {
  if (shares.empty()) return InvalidArgument("no recovery shares given");
  const RecoveryShare& first = shares.front();
  std::set<int> indices;
  for (const auto& s : shares) {
    if (s.cluster_id != first.cluster_id || s.threshold != first.threshold ||
        s.count != first.count || s.recovery_key_sha256 != first.recovery_key_sha256 ||
        s.share.size() != first.share.size()) {
      return InvalidArgument("recovery shares " + std::to_string(first.index) + " and " +
                             std::to_string(s.index) + " are of different clusters or splits");
    }
    if (!indices.insert(s.index).second) {
      return InvalidArgument("recovery share " + std::to_string(s.index) + " was given twice");
    }
  }
  if (static_cast<int>(shares.size()) < first.threshold) {
    return FailedPrecondition(std::to_string(shares.size()) + " recovery share" +
                              (shares.size() == 1 ? "" : "s") + " given, " +
                              std::to_string(first.threshold) + " needed");
  }
  UseOpenSslRandom();  // gfshare_ctx_free overwrites its buffers with it
  // Exactly `threshold` shares: more add nothing, and each one used is one that must be right.
  std::vector<unsigned char> numbers;
  for (int i = 0; i < first.threshold; ++i) numbers.push_back(static_cast<unsigned char>(shares[i].index));
  gfshare_ctx* ctx = gfshare_ctx_init_dec(numbers.data(), numbers.size(),
                                          static_cast<unsigned int>(first.share.size()));
  if (ctx == nullptr) return Internal("libgfshare could not make a context");
  for (int i = 0; i < first.threshold; ++i) {
    SecretBytes copy = shares[i].share.Clone();
    gfshare_ctx_dec_giveshare(ctx, static_cast<unsigned char>(i), copy.data());
  }
  SecretBytes secret(first.share.size());
  gfshare_ctx_dec_extract(ctx, secret.data());
  gfshare_ctx_free(ctx);
  BERTH_ASSIGN_OR_RETURN(Bytes public_key, recovery::PublicKeyOf(secret));
  if (recovery::Fingerprint(public_key) != first.recovery_key_sha256) {
    return PermissionDenied(
        "the recovery shares do not combine to this cluster's recovery key (recovery-key-sha256 " +
        first.recovery_key_sha256.substr(0, 16) + "...): at least one share is wrong");
  }
  return secret;
}

}  // namespace berth::cli
