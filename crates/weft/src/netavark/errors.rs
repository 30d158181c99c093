//! Failures as Podman reads them: exit status 1 and exactly
//! `{"error":"..."}` on stdout (Podman rejects any other field), the
//! message on one line. Podman shows it as `netavark: MESSAGE`.

use super::types::ErrorReply;

/// The error chain on one line, outermost context first.
pub fn one_line(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e.chain().map(|c| c.to_string().replace('\n', " ")).collect();
    parts.join(": ")
}

pub fn reply(e: &anyhow::Error) -> String {
    let msg = format!("weft: {}", one_line(e));
    serde_json::to_string(&ErrorReply { error: &msg }).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_line_with_only_error() {
        let e = anyhow::anyhow!("driver \"macvlan\"\nis not supported").context("network m");
        let r = reply(&e);
        assert_eq!(r, r#"{"error":"weft: network m: driver \"macvlan\" is not supported"}"#);
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1);
    }
}
