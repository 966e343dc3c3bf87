//! Output files that never leave a half-written file in place of a good one.
//!
//! [`OutputFile`] writes a regular file under a temporary name beside the destination and
//! renames it into place on [`commit`](OutputFile::commit); dropped uncommitted, the temporary
//! file is removed and whatever was at the destination stays.
//!
//! A destination that already exists and is *not* a regular file — `/dev/null`, `/dev/stdout`,
//! a FIFO, a character device — is written in place instead: renaming over it would replace
//! the device node with a regular file (run as root, `cwn match … -o /dev/null` would turn the
//! machine's `/dev/null` into a file that every later reader of `/dev/null` sees).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// A file being written for `path`; see the [module docs](self).
#[derive(Debug)]
pub struct OutputFile {
    /// The open file to write to.
    pub file: File,
    pending: Pending,
}

/// What is left to do once an [`OutputFile`]'s bytes are written: the flush to disk and the
/// rename. Dropped without [`commit`](Self::commit), it removes the temporary file.
#[derive(Debug)]
pub struct Pending {
    /// (temporary, destination) while the file is written beside its destination.
    rename: Option<(PathBuf, PathBuf)>,
}

impl OutputFile {
    /// Opens the output for `path` with permission bits `mode` (Unix; a new file only).
    pub fn create(path: &Path, mode: u32) -> io::Result<OutputFile> {
        if let Ok(meta) = std::fs::metadata(path)
            && !meta.is_file()
        {
            if meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "is a directory, not a file",
                ));
            }
            let file = OpenOptions::new().write(true).open(path)?;
            return Ok(OutputFile {
                file,
                pending: Pending { rename: None },
            });
        }
        let tmp = temporary_beside(path)?;
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let file = opts.open(&tmp)?;
        Ok(OutputFile {
            file,
            pending: Pending {
                rename: Some((tmp, path.to_path_buf())),
            },
        })
    }

    /// The file, for a writer that owns it, and what is left to do once it is written.
    pub fn into_parts(self) -> (File, Pending) {
        (self.file, self.pending)
    }

    /// Flushes a regular file to disk and renames it into place.
    pub fn commit(self) -> io::Result<()> {
        self.pending.commit(&self.file)
    }
}

impl Pending {
    /// Flushes `file` (the one this came with) to disk and renames it into place.
    pub fn commit(mut self, file: &File) -> io::Result<()> {
        match self.rename.take() {
            Some((tmp, dest)) => {
                let done = file.sync_all().and_then(|()| std::fs::rename(&tmp, &dest));
                if done.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                done
            }
            None => Ok(()),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some((tmp, _)) = self.rename.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// `.NAME.tmpPID` in the directory of `path`.
/// Replaces `path` with `bytes` at once: written under a temporary name beside it and renamed
/// over it, so that a reader (or a crash) sees the old contents or the new, never a part.
/// With `sync`, durably: the file is flushed before the rename and the folder after it.
pub fn replace(path: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    use std::io::Write as _;
    let tmp = temporary_beside(path)?;
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if sync {
        sync_dir(
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
    }
    Ok(())
}

/// Flushes a folder's entries (a file created or renamed in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

fn temporary_beside(path: &Path) -> io::Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the output is not a file name")
    })?;
    Ok(dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_committed_file_replaces_the_old_one_and_an_uncommitted_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "good").unwrap();
        {
            let mut out = OutputFile::create(&path, 0o644).unwrap();
            out.file.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "good");
        let mut out = OutputFile::create(&path, 0o644).unwrap();
        out.file.write_all(b"new").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_written_into_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut s = String::new();
                File::open(&fifo).unwrap().read_to_string(&mut s).unwrap();
                s
            })
        };
        let mut out = OutputFile::create(&fifo, 0o644).unwrap();
        out.file.write_all(b"through the pipe").unwrap();
        out.commit().unwrap();
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO is still a FIFO, not a file");
        assert_eq!(reader.join().unwrap(), "through the pipe");
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = OutputFile::create(dir.path(), 0o644).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
    }
}
