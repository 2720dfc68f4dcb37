#include "agent/control_plane_keys.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/recovery.h"
#include "common/tpm/policy.h"

namespace berth::agent {

namespace {

using nlohmann::json;

Result<json> TokenFields(LuksKeyslots& keyslots, const std::string& device, const char* type,
                         int* id) {
  BERTH_ASSIGN_OR_RETURN(std::vector<LuksToken> tokens, keyslots.Tokens(device, type));
  if (tokens.empty()) return NotFound(std::string("the state disk has no ") + type + " keyslot");
  auto j = json::parse(tokens.front().json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return DataLoss(std::string("the state disk's ") + type + " token is not JSON");
  }
  if (id != nullptr) *id = tokens.front().id;
  return j;
}

std::string HexField(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

json PolicyJson(const v1::SignedBootPolicy& p) {
  return {{"bank", static_cast<int>(p.bank())},
          {"pcrs", std::vector<uint32_t>(p.pcrs().begin(), p.pcrs().end())},
          {"approved", HexEncode(AsBytes(p.approved_policy()))},
          {"signature", HexEncode(AsBytes(p.signature()))},
          {"signed", p.signed_unix()}};
}

Result<AuthorizedPolicy> PolicyFromJson(const json& p) {
  AuthorizedPolicy out;
  try {
    BERTH_ASSIGN_OR_RETURN(out.bank, tpm::DigestFromTpmAlg(static_cast<uint16_t>(p.at("bank").get<int>())));
    out.pcrs = p.at("pcrs").get<std::vector<uint32_t>>();
    BERTH_ASSIGN_OR_RETURN(out.approved_policy, HexDecode(p.at("approved").get<std::string>()));
    BERTH_ASSIGN_OR_RETURN(out.signature, HexDecode(p.at("signature").get<std::string>()));
  } catch (const json::exception& e) {
    return DataLoss(std::string("a stored boot policy is malformed: ") + e.what());
  }
  return out;
}

}  // namespace

Status ControlPlaneKeys::Refresh(const SecretBytes& disk_key, const v1::ColdStart& cold_start,
                                 std::span<const uint8_t> recovery_public_key) {
  if (!cold_start.boot_policy_key().empty()) {
    const std::string key_hex = HexEncode(AsBytes(cold_start.boot_policy_key()));
    int id = -1;
    auto fields = TokenFields(*keyslots_, device_, kColdStartToken, &id);
    if (!fields.ok() && fields.status().code() != Code::kNotFound) return fields.status();
    if (!fields.ok() || HexField(*fields, "boot-policy-key") != key_hex) {
      BERTH_RETURN_IF_ERROR(SealColdStart(disk_key, key_hex));
      fields = TokenFields(*keyslots_, device_, kColdStartToken, &id);
      if (!fields.ok()) return fields.status();
    }
    if (cold_start.has_policy()) {
      json& policies = (*fields)["policies"];
      if (!policies.is_array()) policies = json::array();
      const json fresh = PolicyJson(cold_start.policy());
      json kept = json::array({fresh});
      for (const auto& p : policies) {
        if (p.is_object() && p.value("approved", "") != fresh["approved"]) kept.push_back(p);
        if (kept.size() == kKeptBootPolicies) break;
      }
      if (kept != policies) {
        policies = std::move(kept);
        BERTH_RETURN_IF_ERROR(keyslots_->UpdateToken(device_, id, fields->dump())
                                  .WithContext("storing the signed boot policy"));
      }
    }
  }
  if (!recovery_public_key.empty()) {
    auto fields = TokenFields(*keyslots_, device_, kRecoveryToken, nullptr);
    if (!fields.ok() && fields.status().code() != Code::kNotFound) return fields.status();
    if (!fields.ok() ||
        HexField(*fields, "recovery-key-sha256") != recovery::Fingerprint(recovery_public_key)) {
      BERTH_RETURN_IF_ERROR(SealRecovery(disk_key, recovery_public_key));
    }
  }
  return OkStatus();
}

Status ControlPlaneKeys::SealColdStart(const SecretBytes& disk_key,
                                       const std::string& boot_policy_key_hex) {
  BERTH_ASSIGN_OR_RETURN(Bytes key, HexDecode(boot_policy_key_hex));
  SecretBytes secret(RandomBytes(32).data(), 32);
  BERTH_ASSIGN_OR_RETURN(SealedSecret sealed,
                         tpm_->SealAuthorized(secret, key, AsBytes(tpm::kColdStartPolicyRef)));
  json fields = {{"boot-policy-key", boot_policy_key_hex},
                 {"tpm2-public", HexEncode(sealed.public_area)},
                 {"tpm2-private", HexEncode(sealed.private_area)},
                 {"policies", json::array()}};
  BERTH_ASSIGN_OR_RETURN(int slot, keyslots_->AddKeyslotWithToken(device_, disk_key, secret,
                                                                   kColdStartToken, fields.dump()));
  spdlog::info("state disk: cold-start keyslot {} sealed to this TPM for boot-policy key {}...",
               slot, boot_policy_key_hex.substr(boot_policy_key_hex.size() - 16));
  return OkStatus();
}

Status ControlPlaneKeys::SealRecovery(const SecretBytes& disk_key,
                                      std::span<const uint8_t> recovery_public_key) {
  SecretBytes secret(RandomBytes(32).data(), 32);
  BERTH_ASSIGN_OR_RETURN(Bytes box, recovery::Seal(recovery_public_key, secret, AsBytes(uuid_)));
  const std::string fingerprint = recovery::Fingerprint(recovery_public_key);
  json fields = {{"box", HexEncode(box)}, {"recovery-key-sha256", fingerprint}};
  BERTH_ASSIGN_OR_RETURN(int slot, keyslots_->AddKeyslotWithToken(device_, disk_key, secret,
                                                                   kRecoveryToken, fields.dump()));
  spdlog::info("state disk: recovery keyslot {} sealed to recovery key {}...", slot,
               fingerprint.substr(0, 16));
  return OkStatus();
}

Result<SecretBytes> ControlPlaneKeys::ColdStartKey() {
  auto fields = TokenFields(*keyslots_, device_, kColdStartToken, nullptr);
  if (!fields.ok()) {
    return fields.status().code() == Code::kNotFound ? PermissionDenied(fields.status().message())
                                                     : fields.status();
  }
  SealedSecret sealed;
  BERTH_ASSIGN_OR_RETURN(sealed.public_area, HexDecode(HexField(*fields, "tpm2-public")));
  BERTH_ASSIGN_OR_RETURN(sealed.private_area, HexDecode(HexField(*fields, "tpm2-private")));
  BERTH_ASSIGN_OR_RETURN(Bytes key, HexDecode(HexField(*fields, "boot-policy-key")));
  const json& policies = (*fields)["policies"];
  if (!policies.is_array() || policies.empty()) {
    return PermissionDenied("the cold-start keyslot has no signed boot policy yet");
  }
  Status last;
  for (const auto& p : policies) {
    BERTH_ASSIGN_OR_RETURN(AuthorizedPolicy policy, PolicyFromJson(p));
    auto secret =
        tpm_->UnsealAuthorized(sealed, key, AsBytes(tpm::kColdStartPolicyRef), policy);
    if (secret.ok()) return secret;
    // A transient TPM failure is not the boot's fault: say so rather than try the next one.
    if (secret.status().code() == Code::kUnavailable) return secret.status();
    last = secret.status();
  }
  return PermissionDenied("none of the " + std::to_string(policies.size()) +
                          " signed boot policies matches this boot (" +
                          std::string(last.message()) + ")");
}

Result<RecoveryBox> ControlPlaneKeys::Recovery() {
  BERTH_ASSIGN_OR_RETURN(json fields, TokenFields(*keyslots_, device_, kRecoveryToken, nullptr));
  RecoveryBox out;
  BERTH_ASSIGN_OR_RETURN(out.box, HexDecode(HexField(fields, "box")));
  out.recovery_key_sha256 = HexField(fields, "recovery-key-sha256");
  return out;
}

}  // namespace berth::agent
