//! Turning a platform `.cdbbz` backup (a zip) into a bundle.
//!
//! The zip holds `Database/`, and optionally `Scripts/` (which belongs in the
//! database folder), `Streams/` and `History/`. Each file is hashed as it is
//! extracted, so the manifest costs no second read.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, FileTimes};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::bundle::{check_free_space, PartialBundle};
use super::manifest::{
    BackupMethod, BundleSources, EntryKind, Manifest, ManifestEntry, FORMAT_VERSION,
};
use super::tree::{create_private_file, hash_stream, StreamError};
use super::{host_name, BackupReport, Phase, Progress};
use crate::error::{Error, Result};
use crate::exec::{unix_seconds_from_civil, utc_rfc3339};

/// Where a top-level folder of a `.cdbbz` goes in a bundle.
const FOLDER_MAP: &[(&str, &str)] = &[
    ("Database", "database"),
    ("Scripts", "database/Scripts"),
    ("Streams", "streams"),
    ("History", "history"),
];

/// The number of entries a zip's end-of-central-directory record declares
/// (the zip64 one when the classic field is saturated); `None` when the
/// record cannot be found (the zip reader then says what is wrong).
fn declared_entries(file: &Path) -> Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut input = File::open(file).map_err(|error| Error::io("open", file, error))?;
    let length = input
        .seek(SeekFrom::End(0))
        .map_err(|error| Error::io("read", file, error))?;
    // The record is 22 bytes plus a comment of at most 65535.
    let tail_length = length.min(22 + 65_535);
    let mut tail = vec![0u8; tail_length as usize];
    input
        .seek(SeekFrom::Start(length - tail_length))
        .and_then(|_| input.read_exact(&mut tail))
        .map_err(|error| Error::io("read", file, error))?;
    let Some(record) = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&at| tail[at..].starts_with(&[0x50, 0x4b, 0x05, 0x06]))
    else {
        return Ok(None);
    };
    let classic = u64::from(u16::from_le_bytes([tail[record + 10], tail[record + 11]]));
    if classic != 0xFFFF {
        return Ok(Some(classic));
    }
    // Zip64: a locator right before the record points at the zip64 record.
    let Some(locator) = record.checked_sub(20) else {
        return Ok(None);
    };
    if !tail[locator..].starts_with(&[0x50, 0x4b, 0x06, 0x07]) {
        return Ok(None);
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&tail[locator + 8..locator + 16]);
    let mut zip64 = [0u8; 56];
    input
        .seek(SeekFrom::Start(u64::from_le_bytes(offset)))
        .and_then(|_| input.read_exact(&mut zip64))
        .map_err(|error| Error::io("read", file, error))?;
    if !zip64.starts_with(&[0x50, 0x4b, 0x06, 0x06]) {
        return Ok(None);
    }
    let mut total = [0u8; 8];
    total.copy_from_slice(&zip64[32..40]);
    Ok(Some(u64::from_le_bytes(total)))
}

/// The bundle path of a zip entry's path, or `None` for a folder the bundle does not keep.
fn bundle_path(zip_path: &Path) -> Option<String> {
    let mut parts = zip_path.components().map(|component| match component {
        Component::Normal(part) => part.to_str(),
        _ => None,
    });
    let top = parts.next()??;
    let (_, mapped) = FOLDER_MAP
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(top))?;
    let mut path = (*mapped).to_owned();
    for part in parts {
        path.push('/');
        path.push_str(part?);
    }
    Some(path)
}

fn zip_error(file: &Path, error: zip::result::ZipError) -> Error {
    Error::io(
        "read the zip archive",
        file,
        io::Error::new(io::ErrorKind::InvalidData, error.to_string()),
    )
}

fn zip_time(time: Option<zip::DateTime>) -> (i64, SystemTime) {
    let seconds = time.map_or(0, |time| {
        unix_seconds_from_civil(
            i64::from(time.year()),
            u32::from(time.month()),
            u32::from(time.day()),
            u32::from(time.hour()),
            u32::from(time.minute()),
            u32::from(time.second()),
        )
    });
    (
        seconds,
        UNIX_EPOCH + Duration::from_secs(seconds.max(0) as u64),
    )
}

/// Gives an extracted file or folder its mode and time, and describes it for the manifest.
fn settle(
    handle: &File,
    written: &Path,
    path: &str,
    kind: EntryKind,
    mode: u32,
    (seconds, time): (i64, SystemTime),
) -> Result<ManifestEntry> {
    handle
        .set_permissions(fs::Permissions::from_mode(mode))
        .and_then(|()| handle.set_times(FileTimes::new().set_modified(time).set_accessed(time)))
        .map_err(|error| Error::io("set the mode and times of", written, error))?;
    let metadata = handle
        .metadata()
        .map_err(|error| Error::io("inspect", written, error))?;
    Ok(ManifestEntry {
        path: path.to_owned(),
        kind,
        size: 0,
        mode,
        mtime: seconds,
        mtime_nsec: 0,
        uid: metadata.uid(),
        gid: metadata.gid(),
        blake3: None,
        target: None,
    })
}

/// Converts the platform backup `file` into a new bundle at `destination`.
///
/// # Errors
/// [`Error::Io`] for an unreadable or malformed zip or a write failure (the
/// partial bundle is then removed); [`Error::CheckFailed`] for an entry
/// whose path would leave the bundle or a zip without `Database/`;
/// [`Error::AlreadyExists`]; [`Error::NotEnoughSpace`] when `check_space`;
/// [`Error::Cancelled`] when the progress's stop request is set (the partial
/// bundle is then removed).
pub fn import_cdbbz(
    file: &Path,
    destination: &Path,
    instance: Option<&str>,
    check_space: bool,
    progress: &Progress,
) -> Result<BackupReport> {
    let clock = Instant::now();
    let started = SystemTime::now();
    let input = File::open(file).map_err(|error| Error::io("open", file, error))?;
    let declared = declared_entries(file)?;
    let mut archive = zip::ZipArchive::new(input).map_err(|error| zip_error(file, error))?;
    // The reader keeps one entry per name: two entries of one name would leave
    // one silently out (which one is the reader's choice).
    if let Some(declared) = declared.filter(|declared| *declared != archive.len() as u64) {
        return Err(Error::CheckFailed {
            what: format!("importing {}", file.display()),
            details: format!(
                "its directory lists {declared} entries but only {} distinct names: an entry \
                 appears more than once; the archive is damaged or was altered",
                archive.len()
            ),
        });
    }
    let mut warnings = Vec::new();
    // Folders (and their times), then files, each with the index of its zip entry.
    let mut folders: BTreeMap<String, Option<(u32, i64, SystemTime)>> = BTreeMap::new();
    let mut files: Vec<(usize, String, u64)> = Vec::new();
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|error| zip_error(file, error))?;
        let raw_name = entry
            .name()
            .map(|name| name.to_string())
            .unwrap_or_default();
        let Some(zip_path) = entry.enclosed_name() else {
            return Err(Error::CheckFailed {
                what: format!("importing {}", file.display()),
                details: format!("entry {raw_name:?} would be written outside the bundle"),
            });
        };
        let Some(path) = bundle_path(&zip_path) else {
            if zip_path
                .components()
                .any(|component| !matches!(component, Component::Normal(_)))
            {
                return Err(Error::CheckFailed {
                    what: format!("importing {}", file.display()),
                    details: format!("entry {raw_name:?} has '..' or '.' in its path"),
                });
            }
            warnings.push(format!(
                "skipped {raw_name}: not under Database/, Scripts/, Streams/ or History/"
            ));
            continue;
        };
        let mut parent = Path::new(&path).parent();
        while let Some(folder) = parent.filter(|folder| !folder.as_os_str().is_empty()) {
            folders
                .entry(folder.to_string_lossy().into_owned())
                .or_insert(None);
            parent = folder.parent();
        }
        let (seconds, time) = zip_time(entry.last_modified());
        if entry.is_dir() {
            let mode = entry.unix_mode().map_or(0o755, |mode| mode & 0o7777);
            folders.insert(path, Some((mode, seconds, time)));
        } else if entry.is_symlink() {
            warnings.push(format!(
                "skipped {raw_name}: links in a platform backup are not imported"
            ));
        } else {
            // Two entries of one name: which one is "the" file is the zip
            // reader's choice, and the other would be lost or overwrite it.
            if files.iter().any(|(_, seen, _)| *seen == path) || folders.contains_key(&path) {
                return Err(Error::CheckFailed {
                    what: format!("importing {}", file.display()),
                    details: format!(
                        "entry {raw_name:?} appears more than once (or as a file and a folder); \
                         the archive is damaged or was altered"
                    ),
                });
            }
            files.push((index, path, entry.size()));
        }
    }
    if !folders.contains_key("database") {
        return Err(Error::CheckFailed {
            what: format!("importing {}", file.display()),
            details: "it has no Database/ folder; is it a platform backup (.cdbbz)?".to_owned(),
        });
    }

    let partial = PartialBundle::create(destination)?;
    let data_bytes: u64 = files.iter().map(|(_, _, size)| size).sum();
    if check_space {
        check_free_space(
            partial.path(),
            data_bytes,
            (files.len() + folders.len()) as u64,
        )?;
    }
    for path in folders.keys() {
        let folder = partial.path().join(path);
        DirBuilder::new()
            .mode(0o700)
            .create(&folder)
            .map_err(|error| Error::io("create the folder", &folder, error))?;
    }
    progress.start(Phase::Copying, data_bytes, files.len() as u64);
    let mut entries = Vec::with_capacity(files.len() + folders.len());
    let mut buffer = vec![0u8; 1 << 20];
    for (index, path, _) in &files {
        progress.check_cancelled()?;
        let mut entry = archive
            .by_index(*index)
            .map_err(|error| zip_error(file, error))?;
        let target = partial.path().join(path);
        let mut output = create_private_file(&target)?;
        let (size, hash) = hash_stream(&mut entry, Some(&mut output), &mut buffer, progress)
            .map_err(|error| match error {
                StreamError::Read(error) => Error::io("extract", PathBuf::from(path), error),
                StreamError::Write(error) => Error::io("write", &target, error),
                StreamError::Cancelled => super::cancelled(),
            })?;
        let mode = entry.unix_mode().map_or(0o644, |mode| mode & 0o7777);
        let (seconds, time) = zip_time(entry.last_modified());
        let mut manifest_entry = settle(
            &output,
            &target,
            path,
            EntryKind::File,
            mode,
            (seconds, time),
        )?;
        manifest_entry.size = size;
        manifest_entry.blake3 = Some(hash);
        progress.add_file();
        entries.push(manifest_entry);
    }
    // Deepest folders first, so setting a time is not undone by filling a child.
    for (path, attributes) in folders.iter().rev() {
        let folder = partial.path().join(path);
        let (mode, seconds, time) = attributes.unwrap_or((0o755, 0, UNIX_EPOCH));
        let handle = File::open(&folder).map_err(|error| Error::io("open", &folder, error))?;
        entries.push(settle(
            &handle,
            &folder,
            path,
            EntryKind::Dir,
            mode,
            (seconds, time),
        )?);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: FORMAT_VERSION,
        tool_version: crate::VERSION.to_owned(),
        instance: instance.map(str::to_owned),
        host: host_name(),
        os_family: None,
        platform_version: None,
        method: BackupMethod::Import,
        consistency: BackupMethod::Import.consistency().to_owned(),
        snapshot: None,
        sources: BundleSources {
            root: String::new(),
            database: file.to_string_lossy().into_owned(),
            streams: None,
        },
        started: utc_rfc3339(started),
        finished: utc_rfc3339(SystemTime::now()),
        files: entries,
    };
    let bundle = partial.finish(&manifest, progress)?;
    Ok(BackupReport {
        bundle,
        method: BackupMethod::Import,
        consistency: manifest.consistency.clone(),
        snapshot: None,
        files: files.len() as u64,
        bytes: manifest.total_bytes(),
        seconds: clock.elapsed().as_secs_f64(),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_folders_map_into_the_bundle() {
        assert_eq!(
            bundle_path(Path::new("Database/db/x.bin")).as_deref(),
            Some("database/db/x.bin")
        );
        assert_eq!(
            bundle_path(Path::new("Scripts/a.cs")).as_deref(),
            Some("database/Scripts/a.cs")
        );
        assert_eq!(
            bundle_path(Path::new("streams/1")).as_deref(),
            Some("streams/1")
        );
        assert_eq!(
            bundle_path(Path::new("History")).as_deref(),
            Some("history")
        );
        assert_eq!(bundle_path(Path::new("Other/x")), None);
        assert_eq!(bundle_path(Path::new("Database/../x")), None);
    }

    #[test]
    fn a_cancelled_import_leaves_no_bundle_and_no_partial() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let cdbbz = dir.path().join("prod.cdbbz");
        let mut archive = zip::ZipWriter::new(File::create(&cdbbz).unwrap());
        archive
            .start_file(
                "Database/db/part-0.bin",
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
        archive.write_all(&[0u8; 1000]).unwrap();
        archive.finish().unwrap();
        let cancel = crate::Cancel::new();
        cancel.cancel();
        let destination = dir.path().join("bundle");
        let error = import_cdbbz(
            &cdbbz,
            &destination,
            None,
            false,
            &Progress::with_cancel(cancel),
        )
        .unwrap_err();
        assert!(matches!(error, Error::Cancelled { .. }), "{error}");
        assert!(!destination.exists());
        assert!(!crate::backup::partial_path(&destination).exists());
    }
}
