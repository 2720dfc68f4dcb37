// The state disk benchmark (qemu/bench-disk runs it; not a test): berth-agent's disk steps on
// a first and a later boot of a QEMU guest, beside `cryptsetup luksFormat` with its defaults
// (argon2id) and with berth's keyslot parameters (PBKDF2-SHA512, 1000 iterations), and `cryptsetup
// open` of each, on the same virtual disk. Prints wall times (the agent's own step lines, GNU
// time for cryptsetup) and peak RSS (GNU time). Under TCG every figure is that of an emulated
// CPU: compare them with each other, not with hardware. BENCH_CPUS and BENCH_CRYPTSETUP: see
// qemu/bench-disk.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "agent/hw/disk.h"

#include "tests/e2e/guest.h"
#include "tests/testing/testing.h"

namespace berth::testing {
namespace {

constexpr int kMemoryMib = 2048;  // room for argon2id's default of up to 1 GiB
constexpr int kDiskMib = 256;

bool Check(bool ok, const std::string& what, const GuestBoot& boot) {
  if (!ok) std::fprintf(stderr, "disk_bench: %s\n%s\n", what.c_str(), boot.Describe().c_str());
  return ok;
}

// The steps, then the figure: exec to READY less the network round trips to berthd
// (the ticket requests) and kubeadm.
void PrintSteps(const char* title, const GuestBoot& boot) {
  std::printf("%s\n", title);
  long started = MillisSinceExec(boot.serial, "started");
  long ready = MillisSinceExec(boot.serial, "ready");
  std::printf("  %-28s %8ld ms\n", "exec to main", started);
  long excluded = 0;
  for (const auto& [step, ms] : StepDurations(boot.serial)) {
    std::printf("  %-28s %8ld ms\n", step.c_str(), ms);
    if (step.starts_with("request-") || step == "kubeadm-join") excluded += ms;
  }
  std::printf("  %-28s %8ld ms\n", "exec to READY", ready);
  std::printf("  %-28s %8ld ms\n", "  less tickets and kubeadm", ready - excluded);
  std::printf("  %-28s %8.0f ms   peak RSS %s KiB\n", "berth-agent, whole run",
              std::atof(boot.Report("agent-seconds").c_str()) * 1000,
              boot.Report("agent-max-rss-kib").c_str());
}

// "SECONDS MAX_RSS_KIB EXIT" -> a line of the table.
bool PrintMeasure(const char* label, const GuestBoot& boot, const std::string& key) {
  std::istringstream in(boot.Report(key));
  double seconds = 0;
  long rss = 0;
  int rc = -1;
  in >> seconds >> rss >> rc;
  std::printf("  %-44s %8.0f ms   peak RSS %7ld KiB\n", label, seconds * 1000, rss);
  return Check(rc == 0, key + " failed", boot);
}

// BENCH_CPUS: the guest's vCPUs (default 1).
int Cpus() {
  const char* env = std::getenv("BENCH_CPUS");
  int cpus = env != nullptr ? std::atoi(env) : 0;
  return cpus > 0 ? cpus : 1;
}

// The disk probe on the host (agent::Disk::Probe, as berth-agent and berthctl disk inspect run
// it) on blank image files: a sparse 1 TiB image, and 64 MiB sparse and written with zeros.
// Blank is the case that costs the most: every range of the data check is read. Then a berth
// LUKS2 disk, which a later boot probes: libblkid's signatures only, no data check. Prints the
// median and the fastest of kProbeRuns, after one run that warms the page cache.
bool ProbeOnTheHost(const TempDir& dir) {
  constexpr int kProbeRuns = 21;
  struct Image {
    const char* label;
    std::string path;
    uintmax_t size;
    bool written;
    bool luks = false;
  };
  const std::vector<Image> images = {
      {"1 TiB sparse image", dir.Join("probe-1t.img"), uintmax_t{1} << 40, false},
      {"64 MiB sparse image", dir.Join("probe-64m.img"), 64 << 20, false},
      {"64 MiB of written zeros", dir.Join("probe-64m-written.img"), 64 << 20, true},
      {"64 MiB berth LUKS2 disk", dir.Join("probe-luks.img"), 64 << 20, false, true},
  };
  std::printf("disk probe on the host (blank images: every range read), %d runs each\n",
              kProbeRuns);
  auto disk = agent::MakeLibDisk();
  for (const Image& image : images) {
    std::ofstream(image.path).close();
    if (image.luks) {
      std::filesystem::resize_file(image.path, image.size);
      SecretBytes key(32);
      Status formatted =
          disk->FormatIfBlank(image.path, "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c", key);
      if (!formatted.ok()) {
        std::fprintf(stderr, "disk_bench: %s\n", formatted.ToString().c_str());
        return false;
      }
    } else if (image.written) {
      std::ofstream out(image.path, std::ios::binary);
      std::vector<char> zeros(1 << 20, 0);
      for (uintmax_t n = 0; n < image.size; n += zeros.size()) out.write(zeros.data(), zeros.size());
    } else {
      std::filesystem::resize_file(image.path, image.size);
    }
    std::vector<double> ms;
    agent::ProbeResult last;
    for (int i = 0; i <= kProbeRuns; ++i) {
      auto start = std::chrono::steady_clock::now();
      auto probe = disk->Probe(image.path);
      auto end = std::chrono::steady_clock::now();
      const auto want =
          image.luks ? agent::ProbeResult::Kind::kLuks : agent::ProbeResult::Kind::kBlank;
      if (!probe.ok() || probe->kind != want) {
        std::fprintf(stderr, "disk_bench: probing %s: %s\n", image.path.c_str(),
                     probe.ok() ? probe->Describe().c_str() : probe.status().ToString().c_str());
        return false;
      }
      last = *probe;
      if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(end - start).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("  %-26s %6.2f ms median, %6.2f ms fastest   %d ranges, %.1f MiB read\n",
                image.label, ms[ms.size() / 2], ms.front(), last.data_reads,
                static_cast<double>(last.data_bytes) / (1 << 20));
    std::filesystem::remove(image.path);
  }
  return true;
}

int Run() {
  TempDir dir;
  if (!ProbeOnTheHost(dir)) return 1;
  const char* guest_env = std::getenv("BENCH_GUEST");
  if (guest_env != nullptr && std::string(guest_env) == "0") return 0;
  std::printf("\n");
  GuestTpm tpm = MakeGuestTpm(dir.Join("tpm"));
  if (tpm.policy_yaml.empty()) return 1;
  GuestCluster cluster(tpm);
  if (!cluster.ok) return 1;
  MakeDirs(dir.Join("node")).ok();
  GuestNode node(dir.Join("node"), tpm.state_dir, kDiskMib);

  GuestBootOptions o;
  o.enrolment = cluster.Enrolment("node-bench");
  o.env = {"BERTH_TEST_MEASURE=1"};
  o.memory_mib = kMemoryMib;
  o.cpus = Cpus();
  GuestBoot first = node.Boot(o);
  if (!Check(first.agent_exit() == 0, "the first boot failed", first)) return 1;
  GuestBoot later = node.Boot(o);
  if (!Check(later.agent_exit() == 0, "the later boot failed", later)) return 1;

  std::printf(
      "berth state disk benchmark: QEMU TCG guest (%s), %d vCPU, %d MiB RAM, %d MiB virtio "
      "disk\n\n",
      first.machine.c_str(), o.cpus, kMemoryMib, kDiskMib);
  PrintSteps("first boot (blank disk): berth-agent steps", first);
  std::printf("\n");
  PrintSteps("later boot (rejoin): berth-agent steps", later);
  std::printf("\nboot wall times (VM start to poweroff): first %.1f s, later %.1f s\n",
              first.seconds, later.seconds);
  std::printf("QEMU's CPU time (%s): first %.2f s, later %.2f s\n", first.machine.c_str(),
              first.qemu_cpu_seconds, later.qemu_cpu_seconds);
  const char* crypt_env = std::getenv("BENCH_CRYPTSETUP");
  if (crypt_env != nullptr && std::string(crypt_env) == "0") return 0;

  GuestBootOptions c;
  c.enrolment = o.enrolment;
  c.run_script = SourceDir() + "/tests/e2e/guest/bench-cryptsetup";
  c.memory_mib = kMemoryMib;
  c.cpus = o.cpus;
  c.timeout = std::chrono::seconds(600);
  GuestBoot crypt = node.Boot(c);
  if (!Check(crypt.outcome == "poweroff", "the cryptsetup boot failed", crypt)) return 1;
  std::printf("\ncryptsetup %s on the same disk\n", crypt.Report("cryptsetup-version").c_str());
  bool ok = PrintMeasure("luksFormat, defaults", crypt, "luksformat-default");
  std::printf("    (%s: time cost %s, memory %s KiB, threads %s)\n",
              crypt.Report("default-pbkdf").c_str(), crypt.Report("default-time-cost").c_str(),
              crypt.Report("default-memory").c_str(), crypt.Report("default-threads").c_str());
  ok &= PrintMeasure("open, argon2id keyslot", crypt, "open-default");
  ok &=
      PrintMeasure("luksFormat --pbkdf argon2id, 1 GiB, 4 passes", crypt, "luksformat-argon2id-1g");
  std::printf("    (keyslot as luksDump shows it: memory %s KiB, time cost %s)\n",
              crypt.Report("argon2id-1g-memory").c_str(),
              crypt.Report("argon2id-1g-time-cost").c_str());
  ok &= PrintMeasure("open, argon2id 1 GiB keyslot", crypt, "open-argon2id-1g");
  ok &= PrintMeasure("luksFormat --pbkdf pbkdf2 --hash sha512 --pbkdf-force-iterations 1000",
                     crypt, "luksformat-pbkdf2");
  ok &= PrintMeasure("open, PBKDF2 keyslot", crypt, "open-pbkdf2");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace berth::testing

int main(int argc, char** argv) {
  // The shared helpers report problems through gtest's assertions; outside a test they are
  // printed, and the benchmark checks every outcome itself.
  ::testing::InitGoogleTest(&argc, argv);
  return berth::testing::Run();
}
