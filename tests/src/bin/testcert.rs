//! `pika-testcert`: a private CA and a `localhost` server certificate for
//! benchmarks over HTTPS (`scripts/bench-sidecar.sh` with `PIKA_BENCH_TLS=1`).
//! Prints the folder holding `ca.crt`, `tls.crt` and `tls.key`. Test data
//! only: the key is written unencrypted.

fn main() {
    let pki = pika_tests::pki::TestPki::new();
    println!("{}", pki.keep().display());
}
