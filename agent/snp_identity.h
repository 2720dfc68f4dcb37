// An SEV-SNP node's own identity (docs/sev-snp.md "Node identity"). The VCEK (or VLEK) that
// signs reports belongs to the host's chip (or the cloud region), so every guest on it shares
// it; berthd needs something that names this guest. The agent makes a P-256 key pair at the
// node's first boot and keeps it, between boots, sealed on the ESP with a key that only the
// AMD secure processor can give this guest:
//
//   SNP_GET_DERIVED_KEY  root: the chip's VCEK root secret (not VMRK: that comes from a
//                        migration agent, which berth's guests do not have)
//                        fields: guest policy, launch measurement, TCB_VERSION
//                        vmpl: the VMPL the agent runs at; tcb_version: CommittedTcb at sealing
//   sealing key  = HKDF-SHA256(derived key, info "berth-snp-identity-seal-v1")
//   the file     = SnpSealedIdentity: those parameters, the public key, AES-256-GCM of the
//                  private key with the parameters and public key as associated data
//
// Why these fields: the measurement keeps other guest images (a host's own, with a shell) from
// deriving the key; the policy keeps a debuggable launch of the same image out; TCB_VERSION
// pinned to the committed TCB at sealing keeps the key stable across TCB updates (firmware can
// derive keys for any TCB up to its committed one, never above it), where leaving it out would
// tie the key to the TCB of the day. A chip move, or a new image (another measurement), cannot
// unseal it: the node then has no identity and berthd treats it as a new machine.
//
// The identity is proven at every join and rejoin: the report's report_data commits to the
// public key with the channel binding (common/binding.h), and the key signs the binding.
#pragma once

#include <string>

#include "agent/hw/sev_guest.h"
#include "berth/v1/berth.pb.h"
#include "common/crypto.h"

namespace berth::agent {

// Where the sealed identity lives (inside the agent's --root): beside the EnrolmentConfig on
// the ESP, which is there before the state disk is unlocked, and on diskless nodes too.
inline constexpr char kSnpIdentityPath[] = "/efi/berth/snp-identity.binpb";

// The fields the sealing key is derived from (see above).
inline constexpr uint64_t kSnpIdentityFields = kFieldGuestPolicy | kFieldMeasurement | kFieldTcbVersion;

// Holds the private key in memory (an EVP_PKEY, freed on destruction). Not thread-safe.
class SnpIdentity {
 public:
  // The identity sealed at `path`, unsealed with this guest's derived key; when there is no
  // file, a new key pair, sealed and written there (0600, atomically) before it is used.
  // FAILED_PRECONDITION naming the file when it exists but this guest cannot unseal it (another
  // chip, image or policy): the file is left as it is.
  static Result<SnpIdentity> LoadOrCreate(SevGuest& device, const std::string& path,
                                          uint32_t vmpl);

  // DER SubjectPublicKeyInfo.
  const Bytes& public_spki() const { return spki_; }
  // Hex SHA-256 of it: what berthd records and policies name (ak_sha256).
  std::string Fingerprint() const;
  // The identity proof for `binding` (common/binding.h SnpIdentityProofMessage).
  Result<Bytes> Prove(std::span<const uint8_t> binding) const;
  bool created() const { return created_; }

 private:
  SnpIdentity(EvpPkeyPtr key, Bytes spki, bool created)
      : key_(std::move(key)), spki_(std::move(spki)), created_(created) {}
  EvpPkeyPtr key_;
  Bytes spki_;
  bool created_ = false;
};

// The sealing and unsealing themselves (for tests and LoadOrCreate).
Result<v1::SnpSealedIdentity> SealSnpIdentity(SevGuest& device, EVP_PKEY* key, uint32_t vmpl);
Result<EvpPkeyPtr> UnsealSnpIdentity(SevGuest& device, const v1::SnpSealedIdentity& sealed);

}  // namespace berth::agent
