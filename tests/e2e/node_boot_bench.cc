// Power-on to Ready with the real kubelet (not a test: it prints figures; BENCHMARKS.md,
// "Power-on to Ready with the real kubelet"). Against a real control plane on this host and a
// real berthd (ImageCluster, as ImageE2eTest), each run boots a new node from the node image
// (image/build --test) in QEMU with OVMF and swtpm: its first boot (format, kubeadm join, the
// kubelet's TLS bootstrap) and a reboot (unlock, rejoin), each until the API server says the
// node is Ready (`kubectl get node`, polled). Then it presses the node's power button; at
// shutdown the test image prints the boot's timestamps (image/test/usr/lib/berth/test/timings,
// with TIMES=1), which this program puts on one clock with the console's lines and the API
// server's timestamps, and prints: each boot's timeline, and at the end the range of each part
// over the runs. It checks the outcome of every boot, not how long it took.
//
//   build/tests/e2e/node_boot_bench [--runs N] [--kubelet-journal]
//     --runs N             default 3; the image_build test makes the image
//     --kubelet-journal    each boot's kubelet journal too, on the same clock
//
// The clock is seconds since QEMU started, on this host. The guest's CLOCK_MONOTONIC (systemd,
// the journal) is placed on it by the console lines that print /proc/uptime: a line cannot
// appear before it was printed, so the smallest "seen - uptime" is the kernel clock's zero, to
// the 20 ms at which qemu/berth_vm.py polls the console. The API server's timestamps are whole
// seconds (truncated) of this host's wall clock.
#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/time.h"
#include "tests/e2e/image_cluster.h"
#include "tests/e2e/image_fixture.h"
#include "tests/e2e/image_node.h"

namespace berth::testing {
namespace {

double HostMonotonic() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The e2e fixture's reference boot and manufactured nodes, outside a test.
class Fixture : public ImageE2eTest {
 public:
  void TestBody() override {}
  using ImageE2eTest::NewNode;
  using ImageE2eTest::ReferencePolicy;
  using ImageE2eTest::SetUp;
  std::string Dir(const std::string& name) const { return dir_.Join(name); }
};

// What the API server said when the node turned Ready.
struct ApiView {
  double ready_seen = -1;  // host CLOCK_MONOTONIC when the poll that saw Ready returned
  double poll_gap = -1;    // since the poll before it began (s): the resolution
  nlohmann::json node, csr;
};

// When the console first showed a line containing `text` (s after QEMU started), -1 if never.
double LineSeen(const ImageBoot& boot, const std::string& text) {
  std::istringstream in(boot.serial_times);
  std::string line;
  while (std::getline(in, line)) {
    size_t space = line.find(' ');
    if (space != std::string::npos && line.find(text, space) != std::string::npos) {
      return std::atof(line.substr(0, space).c_str());
    }
  }
  return -1;
}

// The timings block: (guest CLOCK_MONOTONIC seconds, label), in time order.
std::vector<std::pair<double, std::string>> GuestTimes(const ImageBoot& boot) {
  std::vector<std::pair<double, std::string>> out;
  auto block = boot.blocks.find("timings");
  if (block == boot.blocks.end()) return out;
  std::istringstream in(block->second);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t space = line.find(' ');
    if (space == std::string::npos) continue;
    out.emplace_back(std::atof(line.substr(0, space).c_str()), line.substr(space + 1));
  }
  return out;
}

// The first time (> 0) of a label that starts with `prefix` and contains `text`, -1 if none.
double GuestTime(const std::vector<std::pair<double, std::string>>& times,
                 const std::string& prefix, const std::string& text = "") {
  for (const auto& [t, label] : times) {
    if (t > 0 && label.rfind(prefix, 0) == 0 && label.find(text) != std::string::npos) return t;
  }
  return -1;
}

// Where the guest's CLOCK_MONOTONIC 0 falls, s after QEMU started; -1 if unknown.
double KernelZero(const ImageBoot& boot) {
  double best = -1;
  for (const char* key : {"uptime", "timings-uptime"}) {
    const std::string value = boot.Report(key);
    const double seen = LineSeen(boot, std::string("berth-test: ") + key + "=");
    if (value.empty() || seen < 0) continue;
    const double zero = seen - std::atof(value.c_str());
    if (best < 0 || zero < best) best = zero;
  }
  return best;
}

// An API server timestamp as s after QEMU started; -1 if there is none.
double ApiTime(const ImageBoot& boot, const std::string& rfc3339) {
  auto t = ParseRfc3339(rfc3339);
  return t.ok() ? static_cast<double>(*t) - boot.started_realtime : -1;
}

// Boots `node` and waits until the API server says it is Ready, reported by a kubelet of
// this boot (a boot ID other than `previous_boot_id`); then powers it off. nullopt (and why on
// stderr) if it did not get there.
std::optional<std::pair<ImageBoot, ApiView>> BootToReady(const ImageCluster& cluster,
                                                         ImageNode& node,
                                                         const v1::EnrolmentConfig& config,
                                                         const std::string& name,
                                                         const std::string& previous_boot_id) {
  auto running = node.Start({.enrolment = &config, .options = {"HOLD=1", "TIMES=1"}});
  if (running == nullptr) return std::nullopt;
  ApiView api;
  const double deadline = HostMonotonic() + 900;
  double last_poll = -1;
  while (running->running() && HostMonotonic() < deadline) {
    const double began = HostMonotonic();
    nlohmann::json n = cluster.GetJson({"node", name});
    nlohmann::json ready = ReadyCondition(n);
    if (!ready.is_null() && ready.value("status", "") == "True" &&
        n["status"]["nodeInfo"].value("bootID", "") != previous_boot_id) {
      api.ready_seen = HostMonotonic();
      api.poll_gap = last_poll < 0 ? -1 : api.ready_seen - last_poll;
      api.node = n;
      break;
    }
    last_poll = began;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (api.ready_seen < 0) {
    std::fprintf(stderr, "node_boot_bench: %s did not turn Ready; console (end):\n%s\n",
                 name.c_str(), running->Serial().c_str());
    return std::nullopt;
  }
  // The CSR of this node's TLS bootstrap: made with the last token berthd minted for it.
  std::vector<std::string> tokens = TokenIds(cluster, name);
  if (!tokens.empty()) {
    for (const auto& csr : cluster.GetJson({"csr"}).value("items", nlohmann::json::array())) {
      if (csr["spec"].value("username", "") == "system:bootstrap:" + tokens.back()) api.csr = csr;
    }
  }
  if (!running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300))) {
    std::fprintf(stderr, "node_boot_bench: %s printed no report\n", name.c_str());
    return std::nullopt;
  }
  running->PressPowerButton();
  ImageBoot boot = running->Finish();
  if (boot.outcome != "poweroff" || boot.blocks.count("timings") == 0 ||
      boot.started_monotonic <= 0) {
    std::fprintf(stderr, "node_boot_bench: %s: no timings at shutdown\n%s\n", name.c_str(),
                 boot.Describe().c_str());
    return std::nullopt;
  }
  return std::make_pair(std::move(boot), std::move(api));
}

// One boot on one clock: its events in time order and the parts of the summary.
class Breakdown {
 public:
  Breakdown(const ImageBoot& boot, const ApiView& api);
  // With `kubelet_journal`, also the kubelet's journal of the boot, on the same clock.
  void Print(const char* title, bool kubelet_journal) const;
  const std::vector<std::pair<std::string, double>>& parts() const { return parts_; }

 private:
  void Event(double t, const std::string& what) {
    if (t >= 0) events_.emplace_back(t, what);
  }
  void Part(const std::string& name, double from, double to) {
    if (from >= 0 && to >= 0) parts_.emplace_back(name, to - from);
  }

  std::vector<std::pair<double, std::string>> events_;
  std::vector<std::pair<std::string, double>> parts_;  // in the summary's order
  std::map<std::string, std::string> blocks_;          // systemd-analyze's, as printed
  double kernel_zero_ = -1;
};

Breakdown::Breakdown(const ImageBoot& boot, const ApiView& api) : blocks_(boot.blocks) {
  const double zero = KernelZero(boot);
  kernel_zero_ = zero;
  const auto times = GuestTimes(boot);
  // A guest time (> 0) on the host's clock.
  auto on_host = [&](double t) { return t > 0 && zero >= 0 ? zero + t : -1; };
  auto guest = [&](const std::string& prefix) { return on_host(GuestTime(times, prefix)); };

  const double bds_loading = LineSeen(boot, "BdsDxe: loading");
  const double bds = LineSeen(boot, "BdsDxe: starting");
  const double initrd = LineSeen(boot, "berth-initrd:");
  const double systemd = guest("manager-Userspace");
  const double exec = guest("berth-agent.service ExecMainStart");
  const double agent_ready = guest("berth-agent.service ActiveEnter");
  const double pem = guest("file /var/lib/kubelet/pki/kubelet-client-current.pem");
  const double ready_seen = api.ready_seen - boot.started_monotonic;
  Event(0, "QEMU started");
  Event(bds_loading, "OVMF loads the boot entry (console: BdsDxe: loading)");
  Event(bds, "OVMF starts the boot entry (console: BdsDxe: starting)");
  Event(zero, "the kernel's clock starts (CLOCK_MONOTONIC 0)");
  Event(initrd, "initrd: its first console line");
  Event(systemd, "systemd starts (manager UserspaceTimestamp)");
  Event(guest("systemd-networkd-wait-online.service InactiveExit"),
        "systemd-networkd-wait-online starts");
  Event(guest("network-online.target ActiveEnter"), "network-online.target reached");
  Event(guest("containerd.service ActiveEnter"), "containerd active");
  Event(exec, "berth-agent: exec");

  // The agent's own lines: exec to main, each step (logged when it ends).
  static const std::regex kStep("step=([a-z-]+) result=ok duration_ms=([0-9]+)");
  static const std::regex kSinceExec("(started|ready) ms_since_exec=([0-9]+)");
  std::map<std::string, double> steps;
  std::vector<std::string> step_order;   // as they ran
  std::vector<std::string> after_ready;  // steps that ended after READY
  double started = -1, ready = -1;       // s after exec, the agent's own clock
  double before_ready = 0;               // its steps' time until READY
  double kubeadm_began = -1, kubeadm_ended = -1, kubelet_started = -1;
  for (const auto& [t, label] : times) {
    std::smatch m;
    if (label.rfind("berth-agent ", 0) == 0 && std::regex_search(label, m, kSinceExec)) {
      (m[1].str() == "started" ? started : ready) = std::stod(m[2].str()) / 1000;
      if (m[1].str() == "started") {
        Event(exec >= 0 ? exec + started : -1,
              "berth-agent: main (" + m[2].str() + " ms after exec)");
      }
    } else if (label.rfind("berth-agent ", 0) == 0 && std::regex_search(label, m, kStep)) {
      const double ms = std::stod(m[2].str());
      if (steps.count(m[1].str()) == 0) step_order.push_back(m[1].str());
      steps[m[1].str()] += ms / 1000;
      if (ready < 0) before_ready += ms / 1000;
      if (ready >= 0) after_ready.push_back(m[1].str());
      Event(on_host(t), "berth-agent: " + m[1].str() + " done, " + m[2].str() + " ms");
      if (m[1].str() == "kubeadm-join") {
        kubeadm_ended = on_host(t);
        kubeadm_began = kubeadm_ended - ms / 1000;
        Event(kubeadm_began, "berth-agent: kubeadm join starts");
      }
    } else if (label.rfind("kubeadm ", 0) == 0 || label.rfind("kubelet ", 0) == 0) {
      Event(on_host(t), label.substr(0, 7) + ": " + label.substr(8));
    } else if (label.rfind("systemd ", 0) == 0) {
      Event(on_host(t), "systemd: " + label.substr(8));
      if (kubelet_started < 0 && label.find("Started kubelet") != std::string::npos) {
        kubelet_started = on_host(t);
      }
    }
  }
  Event(pem > 0 && kubeadm_began >= 0 && pem >= kubeadm_began ? pem : -1,
        "the kubelet's client certificate is written (kubelet-client-current.pem)");
  Event(agent_ready, "berth-agent: READY (its unit active)");
  if (!api.csr.is_null()) {
    Event(ApiTime(boot, api.csr["metadata"].value("creationTimestamp", "")),
          "API: the kubelet's CSR created (whole seconds: up to 1 s later)");
    for (const auto& c : api.csr["status"].value("conditions", nlohmann::json::array())) {
      Event(ApiTime(boot, c.value("lastUpdateTime", "")),
            "API: the CSR " + c.value("type", "") + " (whole seconds: up to 1 s later)");
    }
  }
  Event(ApiTime(boot, api.node["metadata"].value("creationTimestamp", "")),
        "API: the Node object created (whole seconds: up to 1 s later)");
  Event(ApiTime(boot, ReadyCondition(api.node).value("lastTransitionTime", "")),
        "API: the Node's Ready condition turns True (whole seconds: up to 1 s later)");
  Event(ready_seen, "kubectl get node: Ready (the poll that saw it returned; previous poll " +
                        std::to_string(static_cast<int>(api.poll_gap * 1000)) + " ms before)");
  std::stable_sort(events_.begin(), events_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });

  // The parts, one after another; then what the agent's time is made of.
  Part("firmware: QEMU start to BdsDxe loading the UKI", 0, bds_loading);
  Part("firmware: loading the UKI (reading, hashing it for PCR 4)", bds_loading, bds);
  Part("UKI: systemd-stub, the kernel's decompression", bds, zero);
  Part("kernel: its clock's start to the initrd", zero, initrd);
  Part("initrd: dm-verity root, overlays, to systemd", initrd, systemd);
  Part("systemd: to berth-agent's exec", systemd, exec);
  if (ready >= 0) parts_.emplace_back("berth-agent: exec to READY (its ms_since_exec)", ready);
  if (started >= 0) parts_.emplace_back("  exec to main (loading)", started);
  double outside = 0;  // what the agent waits for: berthd, kubeadm
  for (const std::string& step : step_order) {
    const bool waits =
        step == "request-ticket" || step == "request-rejoin-ticket" || step == "kubeadm-join";
    const bool late = std::find(after_ready.begin(), after_ready.end(), step) != after_ready.end();
    parts_.emplace_back("  " + step +
                            (waits  ? " (not the agent's own)"
                             : late ? " (after READY)"
                                    : ""),
                        steps[step]);
    if (waits) outside += steps[step];
  }
  if (ready >= 0 && started >= 0) {
    parts_.emplace_back("  between the steps (progress records, logging)",
                        ready - started - before_ready);
    parts_.emplace_back("berth-agent's own: exec to READY less tickets and kubeadm",
                        ready - outside);
  }
  // kubeadm join's phases (its lines), the kubelet's TLS bootstrap inside them, and after.
  const double kubeadm_first = guest("kubeadm ");
  const double kubelet_start_phase = guest("kubeadm [kubelet-start]");
  const double registered = on_host(GuestTime(times, "kubelet ", "Successfully registered node"));
  const double cert = pem >= kubeadm_began && kubeadm_began >= 0 ? pem : -1;
  Part("kubeadm join: exec to its first line (loading kubeadm)", kubeadm_began, kubeadm_first);
  Part("kubeadm join: preflight, discovery, the cluster's configuration", kubeadm_first,
       kubelet_start_phase);
  Part("kubeadm join: kubelet-start, to systemd starting the kubelet", kubelet_start_phase,
       kubeadm_began >= 0 ? kubelet_started : -1);
  Part("kubelet TLS bootstrap: the kubelet's start to its client certificate",
       kubeadm_began >= 0 ? kubelet_started : -1, cert);
  Part("kubeadm join: the certificate to its exit (a healthy kubelet)", cert, kubeadm_ended);
  Part("kubelet: its start to the node registered", kubelet_started, registered);
  Part("kubelet: registered to Ready in kubectl", registered, ready_seen);
  Part("berth-agent READY to Ready in kubectl", agent_ready, ready_seen);
  Part("power-on to Ready in kubectl", 0, ready_seen);
}

void Breakdown::Print(const char* title, bool kubelet_journal) const {
  std::printf("%s: seconds after QEMU started, and since the line before\n", title);
  double previous = 0;
  for (const auto& [t, what] : events_) {
    std::printf("  %7.2f  +%6.2f  %s\n", t, t - previous, what.c_str());
    previous = t;
  }
  auto journal = blocks_.find("kubelet-journal");
  if (kubelet_journal && journal != blocks_.end() && kernel_zero_ >= 0) {
    std::printf("%s: the kubelet's journal\n", title);
    std::istringstream in(journal->second);
    std::string line;
    while (std::getline(in, line)) {
      const size_t space = line.find(' ');
      if (space == std::string::npos) continue;
      std::printf("  %7.2f  %s\n", kernel_zero_ + std::atof(line.substr(0, space).c_str()),
                  line.substr(space + 1, 220).c_str());
    }
  }
  for (const char* name : {"critical-chain", "blame"}) {
    auto block = blocks_.find(name);
    if (block != blocks_.end())
      std::printf("%s: systemd-analyze %s\n%s", title, name, block->second.c_str());
  }
  std::printf("%s: parts (s)\n", title);
  for (const auto& [name, s] : parts_) std::printf("  %7.2f  %s\n", s, name.c_str());
  std::fflush(stdout);
}

// name -> the values of the runs, in the order names first appeared.
class Summary {
 public:
  void Add(const std::vector<std::pair<std::string, double>>& parts) {
    for (const auto& [name, s] : parts) {
      if (values_.count(name) == 0) order_.push_back(name);
      values_[name].push_back(s);
    }
  }
  std::string Range(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return "-";
    auto [lo, hi] = std::minmax_element(it->second.begin(), it->second.end());
    char text[64];
    std::snprintf(text, sizeof text, "%.2f-%.2f (%zu)", *lo, *hi, it->second.size());
    return text;
  }
  const std::vector<std::string>& order() const { return order_; }

 private:
  std::vector<std::string> order_;
  std::map<std::string, std::vector<double>> values_;
};

int Run(int runs, bool kubelet_journal) {
  Fixture fixture;
  fixture.SetUp();
  const std::string policy = fixture.ReferencePolicy();
  if (policy.empty()) return 1;
  ImageCluster cluster(fixture.Dir("cluster"));
  if (!cluster.ok()) {
    std::fprintf(stderr, "node_boot_bench: control plane: %s\n", cluster.error().c_str());
    return 1;
  }
  if (!cluster.StartBerthd(policy)) return 1;
  Summary first, reboot;
  for (int run = 1; run <= runs; ++run) {
    const std::string name = "bench-node-" + std::to_string(run);
    const v1::EnrolmentConfig config = cluster.Enrolment(name);
    auto node = fixture.NewNode(name);
    auto joined = BootToReady(cluster, *node, config, name, "");
    if (!joined) return 1;
    Breakdown one(joined->first, joined->second);
    one.Print(("run " + std::to_string(run) + ", first boot (format, join)").c_str(),
              kubelet_journal);
    first.Add(one.parts());
    const std::string boot_id = joined->second.node["status"]["nodeInfo"].value("bootID", "");
    auto rejoined = BootToReady(cluster, *node, config, name, boot_id);
    if (!rejoined) return 1;
    Breakdown two(rejoined->first, rejoined->second);
    two.Print(("run " + std::to_string(run) + ", reboot (unlock, rejoin)").c_str(),
              kubelet_journal);
    reboot.Add(two.parts());
  }
  std::printf("\nsummary, %d run(s): min-max (boots) in seconds\n", runs);
  std::printf("| | first boot | reboot |\n|---|---|---|\n");
  std::vector<std::string> names = first.order();
  // A part only a reboot has goes after the one it follows there.
  auto after = names.begin();
  for (const auto& name : reboot.order()) {
    auto at = std::find(names.begin(), names.end(), name);
    after = at != names.end() ? at + 1 : names.insert(after, name) + 1;
  }
  for (const auto& name : names) {
    std::printf("| %s | %s | %s |\n", name.c_str(), first.Range(name).c_str(),
                reboot.Range(name).c_str());
  }
  return ::testing::UnitTest::GetInstance()->ad_hoc_test_result().Failed() ? 1 : 0;
}

}  // namespace
}  // namespace berth::testing

int main(int argc, char** argv) {
  // The shared helpers report problems through gtest's assertions; outside a test they are
  // printed, and a run with any of them fails.
  ::testing::InitGoogleTest(&argc, argv);
  int runs = 3;
  bool kubelet_journal = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--runs" && i + 1 < argc) runs = std::atoi(argv[i + 1]);
    if (std::string(argv[i]) == "--kubelet-journal") kubelet_journal = true;
  }
  return berth::testing::Run(runs < 1 ? 1 : runs, kubelet_journal);
}
