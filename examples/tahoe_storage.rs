//! A typed client of a real Tahoe-LAFS storage server.
//!
//! ```text
//! cargo run --release --example tahoe_storage -- STORAGE_FURL [--size BYTES]
//! ```
//!
//! It stores one immutable share of random bytes under a fresh storage
//! index, reads it back, compares, prints `ok` and exits 0; on any
//! failure it prints what went wrong and exits 1 (2 for a bad command
//! line). A storage node writes its FURL to `NODEDIR/private/storage.furl`.
//!
//! The three RemoteInterfaces below are declared as Tahoe declares them
//! (`allmydata/interfaces.py`, Tahoe-LAFS 1.20): the same names on the
//! wire, the same argument names and order, the same constraints. Only
//! the methods this client calls are declared; Python checks a call
//! against the methods it names, so a partial declaration is enough.
//! Because the Tub knows these interfaces, each call is checked before it
//! is sent and each answer as it arrives, as a Python client's are: the
//! example shows one call refused locally (a storage index one byte too
//! long), which never reaches the server.
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use foolscap::core::rng::{Rng, SystemRng};
use foolscap::typed::{Bytes, Constraint, Failure, ObjectId, Value};
use foolscap::{Call, Error, Object};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Tahoe's `MAX_BUCKETS`: at most this many shares per server.
const MAX_BUCKETS: usize = 256;

/// Tahoe's `StorageIndex = StringConstraint(16)`.
fn storage_index() -> Constraint {
    Constraint::byte_string(Some(16))
}

/// Tahoe's `Hash` (lease secrets): exactly 32 bytes.
fn hash() -> Constraint {
    Constraint::ByteString {
        max_length: Some(32),
        min_length: 32,
    }
}

/// `SetOf(int, maxLength=MAX_BUCKETS)`: share numbers.
fn share_numbers() -> Constraint {
    Constraint::set_of(Constraint::int(), Some(MAX_BUCKETS))
}

/// The storage server (Tahoe's `RIStorageServer`).
#[foolscap::remote_interface(name = "RIStorageServer.tahoe.allmydata.com")]
pub trait StorageServer {
    /// `get_version()`: `DictOf(bytes, Any())`.
    #[returns(Constraint::dict_of(Constraint::bytes(), Constraint::Any, None))]
    fn get_version(&self) -> BTreeMap<Bytes, Value>;

    /// `allocate_buckets(storage_index=StorageIndex,
    /// renew_secret=LeaseRenewSecret, cancel_secret=LeaseCancelSecret,
    /// sharenums=SetOf(int, maxLength=MAX_BUCKETS), allocated_size=Offset,
    /// canary=Referenceable)`: returns `TupleOf(SetOf(int, maxLength=MAX_BUCKETS),
    /// DictOf(int, RIBucketWriter, maxKeys=MAX_BUCKETS))`, the shares the
    /// server already has and a writer for each share it accepts.
    #[returns(Constraint::tuple_of([
        share_numbers(),
        Constraint::dict_of(Constraint::int(), Constraint::reference_to("RIBucketWriter"), Some(MAX_BUCKETS)),
    ]))]
    fn allocate_buckets(
        &self,
        #[schema(storage_index())] storage_index: Bytes,
        #[schema(hash())] renew_secret: Bytes,
        #[schema(hash())] cancel_secret: Bytes,
        #[schema(share_numbers())] sharenums: BTreeSet<u16>,
        allocated_size: u64,
        #[schema(Constraint::any_reference())] canary: ObjectId,
    ) -> (BTreeSet<u16>, BTreeMap<u16, BucketWriterClient>);

    /// `get_buckets(storage_index=StorageIndex)`: `DictOf(int,
    /// RIBucketReader, maxKeys=MAX_BUCKETS)`.
    #[returns(Constraint::dict_of(
        Constraint::int(),
        Constraint::reference_to("RIBucketReader"),
        Some(MAX_BUCKETS)
    ))]
    fn get_buckets(
        &self,
        #[schema(storage_index())] storage_index: Bytes,
    ) -> BTreeMap<u16, BucketReaderClient>;
}

/// Where a share is written (Tahoe's `RIBucketWriter`: no
/// `__remote_name__`, so the bare class name is announced).
#[foolscap::remote_interface(name = "RIBucketWriter")]
pub trait BucketWriter {
    /// `write(offset=Offset, data=ShareData)`; `Offset` is
    /// `IntegerConstraint(8)`, as a Rust `u64` is.
    fn write(&self, offset: u64, data: Bytes);
    /// `close()`: the share is complete.
    fn close(&self);
    /// `abort()`: throw the share away.
    fn abort(&self);
}

/// Where a share is read (Tahoe's `RIBucketReader`).
#[foolscap::remote_interface(name = "RIBucketReader")]
pub trait BucketReader {
    /// `read(offset=Offset, length=ReadSize)`: `ShareData`. `ReadSize` is
    /// Python's `int`.
    fn read(&self, offset: u64, #[schema(Constraint::int())] length: u64) -> Bytes;
}

/// The canary `allocate_buckets` wants: an object the server watches (a
/// lost canary before `close` makes it drop the upload). Nobody calls it.
struct Canary;

impl Object for Canary {
    fn call(&self, call: Call) {
        let failure = Failure::no_such_method("Canary", &call.method.to_string());
        call.fail(failure);
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut furl = None;
    let mut size = 100_000usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size" => match args.next().and_then(|s| s.parse().ok()) {
                Some(n) => size = n,
                None => return usage("--size needs a number of bytes"),
            },
            _ if furl.is_none() && !a.starts_with('-') => furl = Some(a),
            _ => return usage(&format!("unexpected argument {a:?}")),
        }
    }
    let Some(furl) = furl else {
        return usage("missing STORAGE_FURL");
    };
    match run(&furl, size) {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tahoe_storage: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("tahoe_storage: {problem}\nusage: tahoe_storage STORAGE_FURL [--size BYTES]");
    ExitCode::from(2)
}

fn random(n: usize) -> Bytes {
    let mut b = vec![0; n];
    SystemRng.fill(&mut b);
    Bytes::from(b)
}

/// What step failed, with the error.
fn step(what: &'static str) -> impl FnOnce(Error) -> String {
    move |e| format!("{what}: {e}")
}

fn run(furl: &str, size: usize) -> Result<(), String> {
    eprintln!("tahoe_storage: connecting to the storage server");
    let tub = foolscap::threads::new_tub().map_err(|e| e.to_string())?;
    let server = StorageServerClient::connect(&tub, furl, TIMEOUT).map_err(step("connecting"))?;
    let version = server.get_version().map_err(step("get_version"))?;
    let v1 = version
        .get(&Bytes::from_static(
            b"http://allmydata.org/tahoe/protocols/storage/v1",
        ))
        .ok_or("get_version: the server does not speak storage protocol v1")?;
    eprintln!("tahoe_storage: server speaks storage v1: {v1:?}");

    let canary = match tub.local(Arc::new(Canary)) {
        Value::Local(id) => id,
        other => return Err(format!("a local object came back as {other:?}")),
    };

    // Checked against our declaration before anything is sent, as a
    // Python client checks it: a 17-byte storage index is refused here.
    match server.allocate_buckets(
        random(17),
        random(32),
        random(32),
        BTreeSet::from([0]),
        size as u64,
        canary,
    ) {
        Err(Error::Violation(v)) => {
            eprintln!("tahoe_storage: refused locally, as it should be: {v}")
        }
        other => {
            return Err(format!(
                "a 17-byte storage index was not refused locally: {other:?}"
            ))
        }
    }

    let share = random(size);
    let storage_index = random(16);
    eprintln!("tahoe_storage: storing a {size}-byte share");
    let (already, writers) = server
        .allocate_buckets(
            storage_index.clone(),
            random(32),
            random(32),
            BTreeSet::from([0]),
            size as u64,
            canary,
        )
        .map_err(step("allocate_buckets"))?;
    if !already.is_empty() {
        return Err(format!(
            "a fresh storage index already has shares {already:?}"
        ));
    }
    let writer = writers.get(&0).ok_or_else(|| {
        format!(
            "allocate_buckets: no writer for share 0 (got {:?})",
            writers.keys()
        )
    })?;
    writer.write(0, share.clone()).map_err(step("write"))?;
    writer.close().map_err(step("close"))?;

    eprintln!("tahoe_storage: reading it back");
    let readers = server
        .get_buckets(storage_index)
        .map_err(step("get_buckets"))?;
    let reader = readers.get(&0).ok_or_else(|| {
        format!(
            "get_buckets: no reader for share 0 (got {:?})",
            readers.keys()
        )
    })?;
    let back = reader.read(0, size as u64).map_err(step("read"))?;
    if back == share {
        Ok(())
    } else {
        Err(format!(
            "read back {} bytes that differ from the {size} written",
            back.len()
        ))
    }
}
