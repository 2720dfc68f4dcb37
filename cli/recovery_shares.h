// K-of-N shares of a cluster's recovery secret (docs/cluster-lifecycle.md "Recovery"): Shamir's
// secret sharing over GF(2^8), by Debian's libgfshare, one text file per operator. Any K shares
// give the secret back; fewer give nothing about it. Each share carries the fingerprint of the
// recovery public key, so a combination of wrong or too few shares is recognised as such
// instead of yielding a random key.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/secret.h"
#include "common/status.h"

namespace berth::cli {

struct RecoveryShare {
  std::string cluster_id;
  int threshold = 0;  // K
  int count = 0;      // N
  int index = 0;      // 1..N
  std::string recovery_key_sha256;  // hex fingerprint of the recovery public key
  SecretBytes share;                // as long as the secret
};

// Splits `secret` (common/recovery.h) into `count` shares of which any `threshold` recover it.
// 2 <= threshold <= count <= 255.
Result<std::vector<RecoveryShare>> SplitRecoverySecret(const SecretBytes& secret,
                                                       const std::string& cluster_id,
                                                       int threshold, int count);

// A share as its operator keeps it: a text file (it holds a secret: berthctl writes it 0600).
SecretBytes FormatShare(const RecoveryShare& share);
// Reads one. INVALID_ARGUMENT naming `where` and the line, or "damaged" when its checksum does
// not match.
Result<RecoveryShare> ParseShare(std::string_view text, const std::string& where);

// Combines shares of one cluster into its recovery secret. Refused, changing nothing, when the
// shares are of different clusters or splits, repeat an index, are fewer than the threshold,
// or combine to a key whose fingerprint is not the one they name (a wrong share).
Result<SecretBytes> CombineRecoveryShares(const std::vector<RecoveryShare>& shares);

}  // namespace berth::cli
