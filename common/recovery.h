// The recovery keyslot of control planes (docs/cluster-lifecycle.md "Recovery"): its key is
// encrypted to the cluster's recovery public key, whose private half exists only when K of N
// operators combine their shares (cli/recovery_shares.h). The node encrypts with the public key
// it was given; berthctl decrypts on the operator's machine and sends the keyslot key back over
// the node's attested channel.
//
// The recovery key pair is X25519, its private key HKDF-SHA256(recovery secret, info
// "berth-recovery-key-v1"). A sealed box is the ephemeral X25519 public key (32 bytes), then
// AES-256-GCM of the message (key = HKDF-SHA256(shared secret, salt = ephemeral public ||
// recovery public, info = "berth-recovery-box-v1" || context), an all-zero nonce, which is safe
// because every box has a fresh key) with `context` as additional data, then the 16-byte tag.
// Pure; thread-safe.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/secret.h"
#include "common/status.h"

namespace berth::recovery {

inline constexpr size_t kSecretSize = 32;
inline constexpr size_t kPublicKeySize = 32;

// The recovery public key of `secret` (kSecretSize bytes).
Result<Bytes> PublicKeyOf(const SecretBytes& secret);

// SHA-256 of a recovery public key, hex: what every share and every EnrolmentConfig names.
std::string Fingerprint(std::span<const uint8_t> public_key);

// The public key in the recovery-key.txt that `berthctl cluster init` writes
// ("recovery-key-sha256: HEX" and "recovery-public-key: HEX" lines): INVALID_ARGUMENT naming
// what is missing or wrong, including a fingerprint line that is not the key's.
Result<Bytes> ParsePublicKeyFile(std::string_view text);

// Encrypts `message` to `public_key`, bound to `context` (e.g. the disk's UUID): a box opened
// with another context fails.
Result<Bytes> Seal(std::span<const uint8_t> public_key, const SecretBytes& message,
                   std::span<const uint8_t> context);

// Opens a box with the recovery secret. PERMISSION_DENIED when the box was not sealed to this
// secret's key or for this context (or was altered); INVALID_ARGUMENT when it is too short.
Result<SecretBytes> Open(const SecretBytes& secret, std::span<const uint8_t> box,
                         std::span<const uint8_t> context);

}  // namespace berth::recovery
