//! Replays every input under `fuzz/regressions/<target>/` (and the local
//! corpora under `fuzz/corpus/<target>/`, if present) through the check of
//! that fuzz target. Runs on stable Rust with a plain `cargo test`.

use std::path::Path;

fn replay(dir: &Path) -> usize {
    let mut n = 0;
    let Ok(targets) = std::fs::read_dir(dir) else {
        return 0;
    };
    for target in targets {
        let target = target.unwrap().path();
        if !target.is_dir() {
            continue;
        }
        let name = target.file_name().unwrap().to_str().unwrap().to_owned();
        let mut files: Vec<_> = std::fs::read_dir(&target)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            // a running fuzzer may delete corpus files while we read them
            let Ok(data) = std::fs::read(&f) else {
                continue;
            };
            eprintln!("replaying {}", f.display());
            foolscap_fuzz::check(&name, &data);
            n += 1;
        }
    }
    n
}

#[test]
fn regressions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let n = replay(&root.join("regressions"));
    eprintln!("{n} regression inputs replayed");
}

#[test]
fn corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let n = replay(&root.join("corpus"));
    eprintln!("{n} corpus inputs replayed");
}

#[test]
fn schema_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions/schema_decoder");
    let broker = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions/broker");
    if std::env::var_os("WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&broker).unwrap();
        std::fs::write(
            broker.join("schema-calls"),
            foolscap_fuzz::broker_schema_seed(),
        )
        .unwrap();
    }
    for (name, data) in foolscap_fuzz::schema_seeds() {
        foolscap_fuzz::check("schema_decoder", &data);
        // keep the committed copies (the fuzzer's starting corpus) current
        if std::env::var_os("WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), &data).unwrap();
        }
    }
}
