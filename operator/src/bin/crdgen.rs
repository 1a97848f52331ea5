//! Writes the CRDs of `pika_operator::crd` to `crds/` and to the chart's
//! `crds/` (run from the workspace root), to the folders given as
//! arguments, or to stdout with `-`.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut targets: Vec<String> = std::env::args().skip(1).collect();
    if targets.is_empty() {
        targets = vec!["crds".into(), "charts/pika-operator/crds".into()];
    }
    let files = pika_operator::crd::crd_files()?;
    for target in targets {
        for (file, yaml) in &files {
            if target == "-" {
                println!("---\n{yaml}");
                continue;
            }
            let path = PathBuf::from(&target).join(file);
            std::fs::create_dir_all(&target)?;
            std::fs::write(&path, yaml)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
