//! The node side of log gatherers: Python's Tub options
//! `log-gatherer-furl` and `log-gatherer-furlfile` (docs/logging.md,
//! "Gatherers").
//!
//! Once the Tub has a location, it connects to each gatherer FURL and keeps
//! reconnecting ([`Tub::connect_to`]); on every connection it fixes its
//! logport's FURL, then sends `logport(<tubid as bytes>, <logport>)` as a
//! call that wants no answer (reqID 0, as Python), and drops its reference
//! to the gatherer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use foolscap_core::furl::Furl;
use foolscap_core::value::Value;

use crate::{Error, Reconnector, Tub};

/// The gatherer FURLs a Tub was given, waiting for its location, and the
/// reconnectors started for them.
#[derive(Default)]
pub(crate) struct LogGatherers {
    furls: Vec<String>,
    furlfiles: Vec<PathBuf>,
    started: HashSet<String>,
    reconnectors: Vec<Reconnector>,
}

/// The FURLs of a gatherer furl file: one per line, blank lines ignored; a
/// file that cannot be read gives none (as Python).
pub fn read_furlfile(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl Tub {
    /// Python's Tub option `log-gatherer-furl` (one FURL or several):
    /// report this Tub's log events to these gatherers, from the moment the
    /// Tub has a location. Every FURL is checked first; none is used if one
    /// is malformed.
    pub fn set_log_gatherer_furl<I, S>(&self, furls: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let furls: Vec<String> = furls
            .into_iter()
            .map(|f| f.as_ref().trim().to_string())
            .collect();
        for f in &furls {
            Furl::parse(f)?;
        }
        self.lock().log_gatherers.furls.extend(furls);
        self.connect_to_log_gatherers();
        Ok(())
    }

    /// Python's Tub option `log-gatherer-furlfile`: the gatherer FURLs of
    /// this file (one per line, blank lines ignored), read once the Tub has
    /// a location; a missing file means no gatherer. (Python takes one such
    /// file; each call here adds one.)
    pub fn set_log_gatherer_furlfile(&self, path: impl AsRef<Path>) {
        self.lock()
            .log_gatherers
            .furlfiles
            .push(path.as_ref().to_path_buf());
        self.connect_to_log_gatherers();
    }

    /// Starts a reconnector for each gatherer FURL not yet started, if the
    /// Tub has a location (called again when it gets one).
    pub(crate) fn connect_to_log_gatherers(&self) {
        let (furls, furlfiles) = {
            let st = self.lock();
            if st.core.location().is_empty() || st.shutdown {
                return;
            }
            let g = &st.log_gatherers;
            (g.furls.clone(), g.furlfiles.clone())
        };
        let mut all = furls;
        for path in furlfiles {
            all.extend(read_furlfile(&path));
        }
        for furl in all {
            if !self.lock().log_gatherers.started.insert(furl.clone()) {
                continue;
            }
            let weak = std::sync::Arc::downgrade(&self.shared);
            let connected = move |gatherer: Value| {
                let Some(shared) = weak.upgrade() else { return };
                Tub { shared }.offer_logport(gatherer);
            };
            match self.connect_to(&furl, connected) {
                Ok(r) => self.lock().log_gatherers.reconnectors.push(r),
                // a malformed line of a furl file: skipped
                Err(_) => continue,
            }
        }
    }

    /// One gatherer connection: `logport(tubid, publisher)`, reqID 0.
    fn offer_logport(&self, gatherer: Value) {
        // the logport's FURL is fixed first, so that it stays the same
        let furl = match self.logport_furl() {
            Ok(f) => f,
            Err(_) => return,
        };
        let tub = self.clone();
        self.get_reference_async(&furl, move |publisher| {
            if let Ok(publisher) = publisher {
                let tubid = Value::bytes(tub.tubid().as_str().as_bytes());
                let _ = tub.call_only(&gatherer, "logport", &[tubid, publisher], &[]);
            }
            // `gatherer` dropped here: the reference is released
        });
    }
}
