// A join ticket as the agent receives it from berthd (v1::JoinTicket bytes, which a
// compromised or impersonated berthd controls): the agent's checks exactly as
// agent.cc RequestJoinTicket runs them (ValidateJoinTicket for a node with and without a
// disk, ValidateEtcdMaterial for a control plane with this boot's keys), then the
// JoinConfiguration it would render from an accepted ticket.
#include <cstddef>
#include <cstdint>

#include "agent/etcd_join.h"
#include "agent/kubeadm.h"
#include "berth/v1/berth.pb.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const berth::agent::EtcdKeys keys = berth::fuzz::FixedEtcdKeys();
  berth::v1::JoinTicket ticket;
  if (!ticket.ParseFromArray(data, static_cast<int>(size))) return 0;
  bool valid = false;
  for (bool want_disk_key : {true, false}) {
    berth::Status st = berth::agent::ValidateJoinTicket(ticket, want_disk_key);
    berth::fuzz::Outcome("ValidateJoinTicket", st);
    valid |= st.ok();
  }
  bool etcd_valid = false;
  if (ticket.has_etcd()) {
    berth::Status st = berth::agent::ValidateEtcdMaterial(
        ticket.etcd(), keys, berth::fuzz::kNodeName, berth::fuzz::kPeerUrl);
    berth::fuzz::Outcome("ValidateEtcdMaterial", st);
    etcd_valid = st.ok();
  }
  if (valid) {
    berth::agent::ControlPlaneJoin cp{.advertise_address = "10.0.0.1"};
    (void)berth::agent::RenderJoinConfiguration(ticket.kubeadm(), berth::fuzz::kNodeName,
                                                etcd_valid ? &cp : nullptr);
  }
  return 0;
}
