//! Fix hints: the command a user would type. Printed, never run.

/// `ip ARGS` run inside a container's namespace: `ip -n NAME` for a named
/// namespace, else through nsenter.
pub fn ip_in(netns: &str, args: &str) -> String {
    let named = netns.strip_prefix("/var/run/netns/").or_else(|| netns.strip_prefix("/run/netns/"));
    match named {
        Some(name) if !name.contains('/') => format!("ip -n {name} {args}"),
        _ => format!("nsenter --net={netns} ip {args}"),
    }
}

pub fn ip(args: &str) -> String {
    format!("ip {args}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_other_namespaces() {
        assert_eq!(ip_in("/var/run/netns/web", "link set eth0 up"), "ip -n web link set eth0 up");
        assert_eq!(
            ip_in("/proc/42/ns/net", "link set eth0 up"),
            "nsenter --net=/proc/42/ns/net ip link set eth0 up"
        );
    }
}
