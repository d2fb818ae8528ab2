//! Durability: the fsync policy of the module docs. Appends and acks only `write(2)`;
//! a [`SyncJob`] taken every `spool_sync_ms` does the fsyncs on a blocking thread.

use std::{
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use super::{
    format::{ack_line, seg_name},
    queue::{Pos, Spool, SpoolError, io_err},
};

/// Replaces `dir/ack` with `pos` through `dir/<tmp_name>` and a rename, fsyncing the
/// temporary file first when `durable`.
fn write_ack(dir: &Path, tmp_name: &str, pos: Pos, durable: bool) -> Result<(), SpoolError> {
    let tmp = dir.join(tmp_name);
    let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_all(ack_line(pos.seg, pos.off).as_bytes())
        .map_err(io_err("write", &tmp))?;
    if durable {
        f.sync_all().map_err(io_err("fsync", &tmp))?;
    }
    let ack = dir.join("ack");
    fs::rename(&tmp, &ack).map_err(io_err("rename ack file to", &ack))
}

pub(super) fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Durability work taken from a [`Spool`] by [`Spool::sync_job`].
#[derive(Debug)]
pub struct SyncJob {
    dir: PathBuf,
    files: Vec<(File, PathBuf)>,
    ack: Option<Pos>,
    fsync_dir: bool,
}

impl SyncJob {
    /// True when there is nothing to do.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.ack.is_none() && !self.fsync_dir
    }

    /// `fdatasync`s the segments, writes `ack` durably (its own temporary name, so it
    /// never races the worker's non-durable rewrites) and `fsync`s the directory.
    ///
    /// # Errors
    /// The first I/O error.
    pub fn run(self) -> Result<(), SpoolError> {
        for (f, p) in &self.files {
            f.sync_data().map_err(io_err("fdatasync", p))?;
        }
        if let Some(pos) = self.ack {
            write_ack(&self.dir, "ack.sync.tmp", pos, true)?;
        }
        if self.fsync_dir || self.ack.is_some() {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }
}

impl Spool {
    /// Rewrites `ack` (no fsync) when the read position moved.
    pub(super) fn persist_ack(&mut self) -> Result<(), SpoolError> {
        if !self.ack_dirty {
            return Ok(());
        }
        write_ack(&self.dir, "ack.tmp", self.read, false)?;
        self.ack_dirty = false;
        self.ack_failures = 0;
        self.acked_since_persist = 0;
        Ok(())
    }

    /// Takes the pending durability work (segment fdatasyncs, a durable `ack`, a directory
    /// fsync) so it can run on a blocking thread while the worker keeps going. Run at most
    /// one job at a time.
    ///
    /// # Errors
    /// When the open segment's descriptor cannot be duplicated.
    pub fn sync_job(&mut self) -> Result<SyncJob, SpoolError> {
        let mut files = std::mem::take(&mut self.pending_sync);
        if self.data_dirty
            && let Some((id, w)) = &self.writer
        {
            let p = self.dir.join(seg_name(*id));
            files.push((
                w.try_clone()
                    .map_err(io_err("duplicate descriptor of", &p))?,
                p,
            ));
            self.data_dirty = false;
        }
        let ack = (self.durable_ack != Some(self.read)).then_some(self.read);
        self.durable_ack = Some(self.read);
        Ok(SyncJob {
            dir: self.dir.clone(),
            files,
            ack,
            fsync_dir: std::mem::take(&mut self.dir_dirty),
        })
    }

    /// Makes everything appended and acknowledged so far durable (see the module docs),
    /// on the calling thread.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.sync_job()?.run()
    }
}
