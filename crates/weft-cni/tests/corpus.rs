//! The fuzzing corpus kept in the repository: each file is a config a
//! runtime could send. `ok-*` must parse; `errN-*` must fail with code N.
//! New crashers found by the property tests belong here.

use weft_cni::NetConf;

#[test]
fn corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).expect("read");
        let got = NetConf::parse(&bytes);
        if name.starts_with("ok-") {
            let (conf, _) = got.unwrap_or_else(|e| panic!("{name}: {}", e.msg));
            let _ = conf.requested_ips(None).expect(&name);
            let _ = conf.requested_mac(None).expect(&name);
        } else {
            let want: u32 = name[3..name.find('-').unwrap()].parse().expect("errN- prefix");
            let e = got.err().unwrap_or_else(|| panic!("{name} parsed"));
            assert_eq!(e.code, want, "{name}: {}", e.msg);
        }
        n += 1;
    }
    assert!(n >= 10, "corpus has only {n} files");
}
