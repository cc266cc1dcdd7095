//! Network namespaces as test hosts: each [`Host`] is a namespace of its
//! own joined to this one by a veth pair, so a process started in it
//! ([`crate::RunnerConfig::netns`]) reaches this host's servers only over
//! that link, at [`Host::gateway`], and is reached at [`Host::addr`], as a
//! replica on another machine would be. Made with `ip netns` and `ip link`
//! (Debian's iproute2); needs root. Removed on drop.

use std::process::Command;

/// Whether this process may make network namespaces (it runs as root).
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A namespace and the veth pair joining it to this one.
pub struct Host {
    /// The namespace's name (for `ip netns exec`).
    pub name: String,
    host_link: String,
    /// This side's address, as the namespace reaches it.
    pub gateway: String,
    /// The namespace's address, as this side reaches it.
    pub addr: String,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (install Debian's iproute2): {e}"));
    assert!(o.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
}

impl Default for Host {
    fn default() -> Self {
        Self::new()
    }
}

impl Host {
    /// Makes the next host of this test process (at most 64): namespace
    /// `sw<pid>-<i>`, the link `10.<a>.<b>.<4i+1>` (this side) to
    /// `10.<a>.<b>.<4i+2>` (the namespace), `a.b` from the process id.
    pub fn new() -> Host {
        static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        let index = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(index < 64, "at most 64 hosts per test process");
        let pid = std::process::id();
        let name = format!("sw{pid}-{index}");
        let host_link = format!("swh{pid}x{index}");
        let ns_link = format!("swn{pid}x{index}");
        let (a, b) = (100 + (pid >> 8) % 100, pid % 256);
        let gateway = format!("10.{a}.{b}.{}", 4 * u32::from(index) + 1);
        let addr = format!("10.{a}.{b}.{}", 4 * u32::from(index) + 2);
        ip(&["netns", "add", &name]);
        let host = Host { name, host_link, gateway, addr };
        ip(&["link", "add", &host.host_link, "type", "veth", "peer", "name", &ns_link]);
        ip(&["link", "set", &ns_link, "netns", &host.name]);
        ip(&["addr", "add", &format!("{}/30", host.gateway), "dev", &host.host_link]);
        ip(&["link", "set", &host.host_link, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", host.name.as_str(), "ip"];
            all.extend(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", host.addr), "dev", &ns_link]);
        inside(&["link", "set", &ns_link, "up"]);
        inside(&["link", "set", "lo", "up"]);
        host
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}
