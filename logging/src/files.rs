//! Opening flogfiles by name: a name ending in `.bz2` is read and written
//! through bzip2 (Python decides by the name, never by the content).

use crate::flogfile::{FlogReader, FlogWriter, ReadError, ReadLimits};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

fn is_bz2(path: &Path) -> bool {
    path.to_str().is_some_and(|s| s.ends_with(".bz2"))
}

/// Open `path` for reading records.
pub fn open(path: &Path, limits: ReadLimits) -> Result<FlogReader<Box<dyn BufRead>>, ReadError> {
    let f = File::open(path)?;
    let inner: Box<dyn BufRead> = if is_bz2(path) {
        Box::new(BufReader::new(bzip2::read::MultiBzDecoder::new(
            BufReader::new(f),
        )))
    } else {
        Box::new(BufReader::new(f))
    };
    FlogReader::new(inner, limits)
}

/// A file being written, compressed or not; call [`Output::finish`] to
/// complete it (the bzip2 trailer is written there).
pub enum Output {
    /// A plain file.
    Plain(BufWriter<File>),
    /// A `.bz2` file.
    Bz2(bzip2::write::BzEncoder<BufWriter<File>>),
}

impl Write for Output {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Plain(w) => w.write(b),
            Output::Bz2(w) => w.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Plain(w) => w.flush(),
            Output::Bz2(w) => w.flush(),
        }
    }
}

impl Output {
    /// Finish the stream and flush the file.
    pub fn finish(self) -> std::io::Result<()> {
        match self {
            Output::Plain(mut w) => w.flush(),
            Output::Bz2(w) => w.finish()?.flush(),
        }
    }
}

/// Create `path` and write the magic line (bzip2-compressed, level 9 as
/// Python's `bz2` module defaults, when the name ends in `.bz2`).
pub fn create(path: &Path) -> std::io::Result<FlogWriter<Output>> {
    create_with(path, is_bz2(path))
}

/// Create `path` bzip2-compressed whatever its name (for a temporary file
/// that will be renamed to a `.bz2` name).
pub fn create_bz2(path: &Path) -> std::io::Result<FlogWriter<Output>> {
    create_with(path, true)
}

fn create_with(path: &Path, bz2: bool) -> std::io::Result<FlogWriter<Output>> {
    let f = BufWriter::new(File::create(path)?);
    let out = if bz2 {
        Output::Bz2(bzip2::write::BzEncoder::new(f, bzip2::Compression::best()))
    } else {
        Output::Plain(f)
    };
    FlogWriter::new(out)
}
