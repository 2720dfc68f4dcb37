// Least privilege for the agent (RELIABILITY.md "Least privilege").
//
// The agent starts as root with what systemd gives a root service: it needs CAP_SYS_ADMIN to
// open the LUKS2 volume and mount it, CAP_IPC_LOCK for libcryptsetup's locked memory, and so
// on. Once the state disk is mounted (on a diskless node, once the ticket is in hand) what is
// left is file work as root: the etcd PKI and progress records, and `kubeadm join` writing
// /etc/kubernetes and /var/lib/kubelet and asking systemd to (re)start kubelet. So the agent
// then keeps only kJoinCapabilities, in every thread and in its bounding set, which bounds
// kubeadm and everything it starts too (etcd and kubelet are started by systemd, not by the
// agent, and keep their own).
//
// It is also undumpable from its first line: it holds disk keys and tokens, so no core dump
// and no ptrace by anything that is not root with CAP_SYS_PTRACE.
#pragma once

#include <linux/capability.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace berth::agent {

// What the rest of a boot needs after the disk is open: root's file access.
inline constexpr std::array<int, 5> kJoinCapabilities = {
    CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID};

// The bit mask of `caps` (bit n is capability n, as /proc/PID/status prints them).
uint64_t CapabilityMask(std::span<const int> caps);

// One thread's capability sets, as /proc/self/task/TID/status shows them.
struct ThreadCapabilities {
  pid_t tid = 0;
  uint64_t inheritable = 0;
  uint64_t permitted = 0;
  uint64_t effective = 0;
  uint64_t bounding = 0;
  uint64_t ambient = 0;
};

// Every thread of this process.
Result<std::vector<ThreadCapabilities>> ReadThreadCapabilities();

// Reduces every thread of this process to `keep`: the bounding set (so that nothing the agent
// starts can regain the rest, whatever it executes), the permitted and effective sets; the
// inheritable and ambient sets are emptied. Capabilities are per thread in Linux, and the
// agent's gRPC threads were started by a library, so each thread is asked with a signal to drop
// its own, and the result is read back from /proc for every thread. A process that holds
// nothing beyond `keep` (not root) has nothing to drop. Errors name the thread or capability.
Status DropCapabilitiesExcept(std::span<const int> keep);

// PR_SET_DUMPABLE 0: no core dump of the agent's memory, no ptrace attach by non-root.
Status MakeUndumpable();

}  // namespace berth::agent
