//! What is measured besides time: a child's peak memory, and the machine and its load.

use std::fs;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::procs::live;

/// Samples a child's peak RSS (VmHWM in /proc/PID/status, a high-water mark of the child's own
/// memory since its exec) every few milliseconds until it exits. Only growth in the last few
/// milliseconds before exit could be missed; a transfer's peak comes long before.
pub struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    peak: Arc<std::sync::atomic::AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: i32) -> RssSampler {
        use std::sync::atomic::Ordering::SeqCst;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (stop2, peak2) = (stop.clone(), peak.clone());
        let thread = thread::spawn(move || {
            while !stop2.load(SeqCst) {
                {
                    // Under the LIVE lock: a pid still listed there is not reaped, so not reused.
                    let lock = live();
                    if !lock.contains(&pid) {
                        break;
                    }
                    if let Some(kib) = vm_hwm_kib(pid) {
                        peak2.fetch_max(kib, SeqCst);
                    }
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        RssSampler { stop, peak, thread: Some(thread) }
    }

    /// The peak seen, KiB (call after the child has exited).
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// VmHWM (peak RSS), KiB, of a running process.
pub fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()
}

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub os: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| "unknown CPU".into());
        let listed = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(listed.max(1));
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
        let os = fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_default();
        Machine { cpu, cores, kernel, os }
    }

    pub fn line(&self) -> String {
        let os = if self.os.is_empty() { String::new() } else { format!(", {}", self.os) };
        format!("{}, {} cores, Linux {}{os}", self.cpu, self.cores, self.kernel)
    }
}

pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}
