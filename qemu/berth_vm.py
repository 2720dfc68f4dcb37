#!/usr/bin/python3
"""Boots one QEMU guest for berth's tests and benchmarks, and watches its serial console.

A library (class Vm) and a command (`berth_vm.py run ...`, see --help). One VM is:

- a kernel + initrd (direct boot) or UEFI firmware (OVMF code + a copy of its variable store)
  booting from the first disk. --ovmf is Debian's OVMF (OVMF_CODE_4M.fd, no Secure Boot) with
  a fresh copy of its empty variable store for this boot: the node image's boots (image/,
  docs/image.md), where the firmware measures what it boots into the TPM. Direct boot of an uncompressed ELF kernel (qemu/guest-kernel
  --vmlinux) uses QEMU's PVH entry and the qboot firmware: under TCG this boots in a third of
  the time of a bzImage under SeaBIOS (no in-guest XZ decompression, no BIOS POST). qboot
  measures nothing into the TPM (the kernel sends TPM2_Startup itself), so PCRs 0-7 stay
  zero; measured boot is OVMF's job. (SeaBIOS with a PVH kernel and an initrd does not
  work with a TPM in QEMU 7.2: QEMU places the initrd over the ACPI tables SeaBIOS grew for
  the TPM's event log.) A bzImage boots under SeaBIOS, which does measure;
- virtio disks (raw or qcow2 image files) in the order given: /dev/vda, /dev/vdb, ...;
- optionally a config disk made from a directory (an ext4 image labelled berth-config,
  read-only; qemu/guest/init mounts it);
- optionally swtpm as the TPM (a TPM 2.0 TIS device), with its state in a directory that
  outlives the VM, so a "reboot" (the next VM on that directory) sees the same TPM;
- QEMU user networking (the guest reaches the host's loopback at 10.0.2.2), with optional
  host port forwards;
- the serial console written to a log file, which is watched for markers: the run can wait
  for a marker, or kill the VM the moment a marker appears (SIGKILL: a power cut);
- QEMU's QMP socket, through which the command presses the guest's ACPI power button when it
  gets SIGUSR1 (a clean shutdown by the guest's systemd: how a test ends a node it let run),
  and optionally a copy of the console with the time each line appeared (--serial-times), for
  the boot-time benchmark.

The machine: QEMU's microvm for a direct kernel boot (no PCI bus; the virtio devices are
virtio-mmio, which the guest's virtio_mmio module finds in microvm's ACPI tables; the TPM is
the TIS at its fixed address, which the kernel takes without an ACPI TPM2 table under
tpm_tis.force=1, and polls: tpm_tis.interrupts=0). microvm gives the guest nothing to calibrate
its TSC against, so under TCG the kernel is told the host's TSC frequency (tsc_early_khz=,
measured here; the guest's TSC is the host's) and that it is reliable (tsc=reliable: on a busy
host, lost timer ticks would otherwise make the kernel distrust the TSC and fall back to
jiffies). q35 for UEFI firmware (OVMF needs PCI, and measures into a TPM that ACPI describes),
and for a direct boot with --machine q35 or BERTH_QEMU_MACHINE=q35.

TCG by default; --accel kvm (or BERTH_QEMU_ACCEL=kvm) where KVM works (on some hosts /dev/kvm
exists but QEMU cannot use it, so it is never picked on its own).

The command prints one JSON line on stdout:
  {"outcome": "poweroff" | "killed-at-marker" | "timeout" | "exited" | "error",
   "seconds": ..., "exit_code": N, "marker": "...", "missing_markers": [...],
   "qemu_cpu_seconds": ..., "machine": "microvm" | "q35",
   "power_button": SECONDS (when SIGUSR1 pressed it, if it did),
   "started_monotonic": ..., "started_realtime": ... (when QEMU was started: this host's
   CLOCK_MONOTONIC and wall clock, seconds; to place other clocks' times on the boot's)}
and exits 0 for "poweroff" and "killed-at-marker", 3 for "timeout", 4 when an
--expect-marker never appeared, 1 otherwise (including QEMU or swtpm failing to start; the
reason is on stderr). "poweroff" means the guest printed qemu/guest/init's poweroff marker
and QEMU exited 0.

Example (what the e2e tests run, tests/e2e/guest.cc):
  qemu/berth_vm.py run --kernel build/tests/e2e/guest/vmlinux \
      --initrd build/tests/e2e/guest/initramfs.cpio --disk /tmp/n/state.img \
      --config-dir /tmp/n/config --swtpm-state /tmp/n/tpm --serial-log /tmp/n/serial.log \
      --kill-at-marker "berth-fault: stopped after mkfs" --timeout 300
"""

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

QEMU = "/usr/bin/qemu-system-x86_64"
QBOOT = "/usr/share/qemu/qboot.rom"
SWTPM = "/usr/bin/swtpm"
MKFS_EXT4 = "/sbin/mkfs.ext4"
POWEROFF_MARKER = "berth-guest: poweroff"
# What the kernel prints when systemd powers the node image off.
KERNEL_POWEROFF_MARKER = "reboot: Power down"
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
# Debian's other build of the same OVMF (2 MiB flash): another firmware, so another PCR 0, for
# tests of a node whose firmware changed (--ovmf-2m).
OVMF_CODE_2M = "/usr/share/OVMF/OVMF_CODE.fd"
OVMF_VARS_2M = "/usr/share/OVMF/OVMF_VARS.fd"


class VmError(Exception):
    pass


def _die_with_parent():
    """Runs in the child before exec: SIGKILL it if this process dies, so a killed runner
    leaves no QEMU or swtpm behind."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def make_config_disk(directory, image, size_mib=16):
    """An ext4 image labelled berth-config holding `directory`'s files (no root needed)."""
    if os.path.exists(image):
        os.unlink(image)
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    r = subprocess.run([MKFS_EXT4, "-q", "-F", "-L", "berth-config", "-E", "root_owner=0:0",
                        "-d", directory, image], capture_output=True, text=True)
    if r.returncode != 0:
        raise VmError(f"mkfs.ext4 -d {directory} failed: {r.stderr.strip()}")
    return image


class Vm:
    """One QEMU process (and its swtpm). Not thread-safe; use from one thread.

    Start with start(); then wait_for() markers, kill() it, or wait_exit(). close() (or the
    context manager) stops whatever still runs.
    """

    def __init__(self, serial_log, kernel=None, initrd=None, append="", firmware=None,
                 firmware_vars=None, disks=(), config_dir=None, swtpm_state=None, hostfwds=(),
                 network=True, memory_mib=512, cpus=1, accel=None, qemu_log=None,
                 bios=None, extra_args=(), netdev_opts="", poweroff_marker=POWEROFF_MARKER,
                 machine=None, serial_times=None, firmware_vars_template=OVMF_VARS, tap=None,
                 mac=None):
        if (kernel is None) == (firmware is None):
            raise VmError("give either a kernel (direct boot) or firmware (UEFI)")
        machine = machine or os.environ.get("BERTH_QEMU_MACHINE") or (
            "microvm" if kernel is not None else "q35")
        if machine not in ("microvm", "q35"):
            raise VmError(f"unknown machine {machine!r}: microvm or q35")
        if machine == "microvm" and firmware is not None:
            raise VmError("microvm boots a kernel directly; UEFI firmware needs q35")
        self.machine = machine
        self.serial_log = os.path.abspath(serial_log)
        self.kernel, self.initrd, self.append = kernel, initrd, append
        # Direct boot on q35: qboot for an ELF (PVH) kernel, SeaBIOS (QEMU's default)
        # otherwise. microvm's default firmware is qboot.
        if bios is None and kernel is not None and _is_elf(kernel) and machine == "q35":
            bios = QBOOT
        self.bios = bios
        # firmware_vars "fresh": a copy of OVMF's empty variable store, made per boot.
        self.firmware, self.firmware_vars = firmware, firmware_vars
        self.firmware_vars_template = firmware_vars_template
        self.netdev_opts = netdev_opts
        self.poweroff_marker = poweroff_marker
        self.disks = list(disks)
        self.config_dir = config_dir
        self.swtpm_state = os.path.abspath(swtpm_state) if swtpm_state else None
        self.hostfwds = list(hostfwds)
        self.network = network
        # tap: an existing tap device (qemu/netns-bridge) instead of QEMU's user network.
        if tap and (hostfwds or netdev_opts):
            raise VmError("--hostfwd and --netdev-opts are options of the user network, not of --tap")
        self.tap, self.mac = tap, mac
        self.memory_mib, self.cpus = memory_mib, cpus
        self.accel = accel or os.environ.get("BERTH_QEMU_ACCEL", "tcg")
        self.qemu_log = qemu_log or self.serial_log + ".qemu"
        self.extra_args = list(extra_args)
        self.serial_times = os.path.abspath(serial_times) if serial_times else None
        self._times_thread = None
        self._times_stop = threading.Event()
        self.qmp_socket = None
        self.qemu = None
        self.swtpm = None
        self.rundir = None
        self.started = None
        self._children_cpu = 0.0
        self._seen = ""  # serial output read so far

    # ---- starting ----

    def _start_swtpm(self):
        os.makedirs(self.swtpm_state, exist_ok=True)
        ctrl = os.path.join(self.rundir, "swtpm.sock")
        log = open(os.path.join(self.rundir, "swtpm.log"), "ab")
        # No --flags startup-clear: the firmware sends TPM2_Startup, as on a real machine.
        self.swtpm = subprocess.Popen(
            [SWTPM, "socket", "--tpm2", "--tpmstate", "dir=" + self.swtpm_state,
             "--ctrl", "type=unixio,path=" + ctrl, "--log", "level=1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while not os.path.exists(ctrl):
            if self.swtpm.poll() is not None or time.monotonic() > deadline:
                raise VmError("swtpm did not start: " + self._tail(os.path.join(self.rundir, "swtpm.log")))
            time.sleep(0.02)
        return ctrl

    def argv(self, tpm_ctrl=None, config_image=None):
        micro = self.machine == "microvm"
        # virtio devices: on the virtio-mmio transport on microvm, PCI on q35.
        virtio = "device" if micro else "pci"
        machine = "microvm,acpi=on,isa-serial=on,rtc=on" if micro else "q35"
        a = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
             "-M", machine, "-accel", self.accel, "-cpu", "max",
             "-m", str(self.memory_mib), "-smp", str(self.cpus),
             "-serial", "file:" + self.serial_log, "-monitor", "none",
             "-device", f"virtio-rng-{virtio}"]
        if self.qmp_socket:
            a += ["-qmp", f"unix:{self.qmp_socket},server=on,wait=off"]
        if self.bios:
            a += ["-bios", self.bios]
        if self.kernel:
            a += ["-kernel", self.kernel]
            if self.initrd:
                a += ["-initrd", self.initrd]
            append = self.append
            if micro and self.accel == "tcg":
                append += f" tsc_early_khz={host_tsc_khz()} tsc=reliable"
            if micro and tpm_ctrl:
                # microvm has no ACPI TPM2 table: the kernel takes the TIS at its fixed
                # address when forced, and polls it (microvm wires no TPM interrupt).
                append += " tpm_tis.force=1 tpm_tis.interrupts=0"
            a += ["-append", append.strip()]
        else:
            a += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={self.firmware}"]
            if self.firmware_vars:
                a += ["-drive", f"if=pflash,format=raw,unit=1,file={self.firmware_vars}"]
        disks = list(self.disks)
        if config_image:
            disks.append({"path": config_image, "readonly": True, "serial": "berth-config"})
        for i, d in enumerate(disks):
            d = d if isinstance(d, dict) else parse_disk(d)
            opts = [f"file={d['path']}", f"format={d.get('format', 'raw')}", "if=none",
                    f"id=disk{i}", "cache=writeback"]
            if d.get("readonly"):
                opts.append("readonly=on")
            a += ["-drive", ",".join(opts)]
            dev = f"virtio-blk-{virtio},drive=disk{i}"
            if d.get("serial"):
                dev += f",serial={d['serial']}"
            if i == 0 and self.firmware:
                dev += ",bootindex=0"
            a += ["-device", dev]
        if self.network:
            if self.tap:
                net = f"tap,id=net0,ifname={self.tap},script=no,downscript=no"
            else:
                net = "user,id=net0" + ("," + self.netdev_opts if self.netdev_opts else "")
                for fwd in self.hostfwds:
                    net += ",hostfwd=" + fwd
            dev = f"virtio-net-{virtio},netdev=net0" + (f",mac={self.mac}" if self.mac else "")
            a += ["-netdev", net, "-device", dev]
        if tpm_ctrl:
            a += ["-chardev", f"socket,id=chrtpm,path={tpm_ctrl}",
                  "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                  "-device", "tpm-tis,tpmdev=tpm0"]
        return a + self.extra_args

    def start(self):
        self.rundir = tempfile.mkdtemp(prefix="berth-vm-")
        try:
            config_image = None
            if self.config_dir:
                config_image = make_config_disk(self.config_dir,
                                                os.path.join(self.rundir, "config.img"))
            if self.firmware_vars == "fresh":
                self.firmware_vars = os.path.join(self.rundir, "OVMF_VARS.fd")
                shutil.copyfile(self.firmware_vars_template, self.firmware_vars)
            tpm_ctrl = self._start_swtpm() if self.swtpm_state else None
            open(self.serial_log, "wb").close()
            self._seen = ""
            self.qmp_socket = os.path.join(self.rundir, "qmp.sock")
            qlog = open(self.qemu_log, "wb")
            self.started = time.monotonic()
            self.started_realtime = time.time()
            self._children_cpu = _children_cpu_seconds()
            self.qemu = subprocess.Popen(self.argv(tpm_ctrl, config_image), stdin=subprocess.DEVNULL,
                                         stdout=qlog, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent)
            if self.serial_times:
                self._times_thread = threading.Thread(target=self._stamp_serial, daemon=True)
                self._times_thread.start()
        except Exception:
            self.close()
            raise
        return self

    # ---- watching ----

    def serial(self):
        """Everything the guest wrote on its serial console so far."""
        try:
            with open(self.serial_log, "rb") as f:
                self._seen = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            pass
        return self._seen

    def running(self):
        return self.qemu is not None and self.qemu.poll() is None

    def _stamp_serial(self):
        """Copies each complete console line to serial_times as "SECONDS LINE", SECONDS being
        when it was first seen (polled every 20 ms) since QEMU was started."""
        pos, partial = 0, b""
        with open(self.serial_times, "w") as out:
            while True:
                stopping = self._times_stop.is_set()
                try:
                    with open(self.serial_log, "rb") as f:
                        f.seek(pos)
                        chunk = f.read()
                except OSError:
                    chunk = b""
                pos += len(chunk)
                t = time.monotonic() - self.started
                lines = (partial + chunk).split(b"\n")
                partial = lines.pop()
                for line in lines:
                    out.write("%.3f %s\n" % (t, line.rstrip(b"\r").decode("utf-8", "replace")))
                out.flush()
                if stopping:
                    if partial:
                        out.write("%.3f %s\n" % (t, partial.decode("utf-8", "replace")))
                    return
                time.sleep(0.02)

    def press_power_button(self):
        """The guest's ACPI power button (QMP system_powerdown): its systemd shuts it down."""
        if not self.running() or not self.qmp_socket:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.qmp_socket)
            f = s.makefile("rwb")
            f.readline()  # the greeting
            for cmd in ("qmp_capabilities", "system_powerdown"):
                f.write(json.dumps({"execute": cmd}).encode() + b"\n")
                f.flush()
                while True:  # skip events until the command's answer
                    answer = json.loads(f.readline() or b"{}")
                    if "return" in answer or "error" in answer or not answer:
                        break
                if "error" in answer:
                    raise VmError("QMP %s: %s" % (cmd, answer["error"]))
        return True

    def wait_for(self, markers, timeout):
        """Waits until one of `markers` is on the console; returns it, or None if QEMU exited
        or `timeout` seconds passed first."""
        if isinstance(markers, str):
            markers = [markers]
        deadline = time.monotonic() + timeout
        while True:
            alive = self.running()  # read before the log: output precedes an exit
            text = self.serial()
            for m in markers:
                if m in text:
                    return m
            if not alive or time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def wait_exit(self, timeout):
        """Waits for QEMU to exit; returns its exit code, or None on timeout."""
        try:
            return self.qemu.wait(timeout=max(0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """Pulls the plug: SIGKILL, no shutdown, nothing flushed by the guest. Returns whether
        the VM was still running (False: it had exited on its own)."""
        was_running = self.running()
        if was_running:
            self.qemu.kill()
        if self.qemu is not None:
            self.qemu.wait()
        return was_running

    def cpu_seconds(self):
        """CPU time (user + system) QEMU used, once it has exited and been reaped; None before.
        Under TCG that is the emulation's work, which a busy host slows less than wall time."""
        if self.qemu is None or self.qemu.returncode is None:
            return None
        return _children_cpu_seconds() - self._children_cpu

    def elapsed(self):
        return time.monotonic() - self.started if self.started else 0.0

    def close(self):
        if self.qemu is not None and self.qemu.poll() is None:
            self.qemu.kill()
            self.qemu.wait()
        if self._times_thread is not None:
            self._times_stop.set()
            self._times_thread.join()
            self._times_thread = None
        if self.swtpm is not None:
            if self.swtpm.poll() is None:
                self.swtpm.terminate()  # swtpm saves its state on SIGTERM
                try:
                    self.swtpm.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.swtpm.kill()
                    self.swtpm.wait()
            self.swtpm = None
        if self.rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
            self.rundir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _tail(path, n=2000):
        try:
            with open(path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"


_RDTSC = None


def _rdtsc():
    """The host's time stamp counter: `rdtsc; shl rdx, 32; or rax, rdx; ret`, run from an
    executable page through ctypes (x86-64 only)."""
    global _RDTSC
    if _RDTSC is None:
        import mmap
        code = bytes([0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        _RDTSC = (page, ctypes.CFUNCTYPE(ctypes.c_uint64)(address))
    return _RDTSC[1]()


def host_tsc_khz():
    """The host's TSC frequency in kHz, measured against CLOCK_MONOTONIC_RAW over 50 ms.

    Under TCG the guest's TSC is the host's. On microvm the guest kernel has no PIT gate (port
    0x61), HPET or ACPI PM timer to calibrate its TSC against, so it stops at boot ("tsc: Unable
    to calibrate against PIT") unless told the frequency (tsc_early_khz=). Each reading of the
    counter is bracketed by two clock readings, and the tightest of a few brackets is kept, so a
    preemption of this process does not skew the figure. Falls back to /proc/cpuinfo's "cpu MHz"
    where an executable page cannot be mapped."""
    def sample():
        best = None
        for _ in range(20):
            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
            tsc = _rdtsc()
            after = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
            if best is None or after - before < best[0]:
                best = (after - before, tsc, (before + after) // 2)
        return best[1], best[2]
    try:
        tsc0, ns0 = sample()
        time.sleep(0.05)
        tsc1, ns1 = sample()
        return (tsc1 - tsc0) * 1_000_000 // (ns1 - ns0)
    except (OSError, ValueError, AttributeError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
        raise VmError("cannot tell the host's TSC frequency (microvm under TCG needs it)")


def _children_cpu_seconds():
    """User + system CPU seconds of this process's reaped children."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def parse_disk(spec):
    """PATH[,format=raw|qcow2][,readonly][,serial=S]"""
    parts = spec.split(",")
    d = {"path": os.path.abspath(parts[0])}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k == "readonly":
            d["readonly"] = v in ("", "on", "true", "1")
        elif k in ("format", "serial"):
            d[k] = v
        else:
            raise VmError(f"unknown disk option {k!r} in {spec!r}")
    return d


def run(args):
    firmware, firmware_vars, marker = args.firmware, args.firmware_vars, args.poweroff_marker
    vars_template = OVMF_VARS
    if args.ovmf or args.ovmf_2m:
        firmware, firmware_vars = (OVMF_CODE_2M if args.ovmf_2m else OVMF_CODE), "fresh"
        vars_template = OVMF_VARS_2M if args.ovmf_2m else OVMF_VARS
        marker = marker or KERNEL_POWEROFF_MARKER
    vm = Vm(args.serial_log, kernel=args.kernel, initrd=args.initrd, append=args.append,
            firmware=firmware, firmware_vars=firmware_vars,
            disks=[parse_disk(d) for d in args.disk], config_dir=args.config_dir,
            swtpm_state=args.swtpm_state, hostfwds=args.hostfwd, network=not args.no_network,
            memory_mib=args.memory, cpus=args.cpus, accel=args.accel, qemu_log=args.qemu_log,
            bios=args.bios, extra_args=args.qemu_arg, netdev_opts=args.netdev_opts,
            poweroff_marker=marker or POWEROFF_MARKER, machine=args.machine,
            serial_times=args.serial_times, firmware_vars_template=vars_template, tap=args.tap,
            mac=args.mac)
    result = {"outcome": "exited", "seconds": 0.0, "exit_code": None, "marker": None}

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    def on_power_button(signum, frame):
        try:
            if vm.press_power_button():
                result["power_button"] = round(vm.elapsed(), 3)
        except (OSError, ValueError, VmError) as e:
            sys.stderr.write(f"berth_vm: pressing the power button: {e}\n")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, on_power_button)
    try:
        vm.start()
        markers = list(args.kill_at_marker)
        if markers:
            m = vm.wait_for(markers, args.timeout)
            if m is not None and vm.kill():
                result.update(outcome="killed-at-marker", marker=m)
        if result["outcome"] != "killed-at-marker":
            code = vm.wait_exit(args.timeout - vm.elapsed())
            if code is None:
                vm.kill()
                result["outcome"] = "timeout"
            else:
                result["exit_code"] = code
                if code == 0 and vm.poweroff_marker in vm.serial():
                    result["outcome"] = "poweroff"
        if result["outcome"] == "exited":
            sys.stderr.write("berth_vm: QEMU exited without the guest powering off; its log:\n" +
                             Vm._tail(vm.qemu_log) + "\n")
    except KeyboardInterrupt:
        result["outcome"] = "interrupted"
    except VmError as e:
        sys.stderr.write(f"berth_vm: {e}\n")
        result["outcome"] = "error"
    finally:
        result["seconds"] = round(vm.elapsed(), 3)
        cpu = vm.cpu_seconds()  # before close(), which reaps swtpm
        if cpu is not None:
            result["qemu_cpu_seconds"] = round(cpu, 3)
        result["machine"] = vm.machine
        if vm.started is not None:
            result["started_monotonic"] = round(vm.started, 6)
            result["started_realtime"] = round(vm.started_realtime, 6)
        vm.close()
    missing = [m for m in args.expect_marker if m not in vm.serial()]
    if missing:
        result["missing_markers"] = missing
    print(json.dumps(result), flush=True)
    code = {"poweroff": 0, "killed-at-marker": 0, "timeout": 3}.get(result["outcome"], 1)
    return 4 if code == 0 and missing else code


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="boot a guest until it powers off (or a marker, or a timeout)")
    boot = r.add_argument_group("boot (one of --kernel or --firmware)")
    boot.add_argument("--kernel", help="kernel for direct boot: an ELF vmlinux (PVH, qboot) or a bzImage (SeaBIOS)")
    boot.add_argument("--bios", help="firmware for direct boot (default: qboot for an ELF kernel, else SeaBIOS)")
    boot.add_argument("--initrd", help="initramfs for --kernel")
    boot.add_argument("--append", default="console=ttyS0 panic=-1 quiet",
                      help="kernel command line (default: %(default)s)")
    boot.add_argument("--firmware", help="UEFI firmware code (e.g. OVMF_CODE_4M.fd), read-only")
    boot.add_argument("--firmware-vars", help="a writable copy of the firmware's variable store")
    boot.add_argument("--ovmf", action="store_true",
                      help="UEFI boot with Debian's OVMF (%s) and a fresh copy of its variables" % OVMF_CODE)
    boot.add_argument("--ovmf-2m", action="store_true",
                      help="as --ovmf with Debian's other OVMF build (%s): another firmware "
                           "measurement" % OVMF_CODE_2M)
    r.add_argument("--disk", action="append", default=[],
                   help="PATH[,format=raw|qcow2][,readonly][,serial=S]; repeatable, in order")
    r.add_argument("--config-dir", help="attach this directory as the berth-config disk")
    r.add_argument("--swtpm-state", help="swtpm state directory (created; kept across runs)")
    r.add_argument("--hostfwd", action="append", default=[], help="e.g. tcp:127.0.0.1:2222-:22")
    r.add_argument("--no-network", action="store_true")
    r.add_argument("--tap", help="the guest's network is this tap device (e.g. one of "
                                 "qemu/netns-bridge's) instead of QEMU's user network")
    r.add_argument("--mac", help="the guest's MAC address, e.g. 52:54:00:77:00:01")
    r.add_argument("--netdev-opts", default="",
                   help="more options of the user network, e.g. net=10.0.2.0/24,host=10.0.2.2")
    r.add_argument("--poweroff-marker",
                   help="console text that makes a clean exit a \"poweroff\" (default: %r; with "
                        "--ovmf: %r)" % (POWEROFF_MARKER, KERNEL_POWEROFF_MARKER))
    r.add_argument("--machine", choices=["microvm", "q35"],
                   help="default: $BERTH_QEMU_MACHINE, else microvm for --kernel, q35 for firmware")
    r.add_argument("--memory", type=int, default=512, help="MiB (default %(default)s)")
    r.add_argument("--cpus", type=int, default=1)
    r.add_argument("--accel", choices=["kvm", "tcg"], help="default: $BERTH_QEMU_ACCEL or tcg")
    r.add_argument("--serial-log", required=True)
    r.add_argument("--qemu-log", help="QEMU's own output (default: SERIAL_LOG.qemu)")
    r.add_argument("--timeout", type=float, default=300, help="seconds before the VM is killed")
    r.add_argument("--kill-at-marker", action="append", default=[],
                   help="SIGKILL the VM as soon as this text is on the console (repeatable)")
    r.add_argument("--expect-marker", action="append", default=[],
                   help="fail (exit 4) unless this text was on the console (repeatable)")
    r.add_argument("--qemu-arg", action="append", default=[],
                   help="an extra QEMU argument, passed as is (repeatable)")
    r.add_argument("--serial-times",
                   help="also write each console line here as \"SECONDS LINE\", SECONDS since "
                        "QEMU started (when the line appeared, to 20 ms)")
    args = p.parse_args()
    if sum(bool(x) for x in (args.ovmf, args.ovmf_2m, args.firmware)) > 1:
        p.error("one of --ovmf, --ovmf-2m and --firmware")
    if (args.kernel is None) == (args.firmware is None and not args.ovmf and not args.ovmf_2m):
        p.error("give exactly one of --kernel, --firmware, --ovmf and --ovmf-2m")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
