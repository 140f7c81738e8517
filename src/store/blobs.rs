//! The filesystem blob store: immutable, content-addressed files under the data directory.
//!
//! A blob lives at `blobs/sha256/<first 2 hex>/<64 hex>`, named by the SHA-256 of its content.
//! It is written to a temp file in `tmp/` (same filesystem), hashed while written, fsynced, made
//! read-only and renamed into place, then its directory is fsynced: a reader or a crash sees the
//! whole blob or none of it. This module never opens a published blob for writing and never
//! replaces one: committing content that already exists keeps the existing file, so a blob that
//! a download is streaming or memory-mapping cannot change under it.

use super::hashing_file::HashingFile;
use super::{
    io_err, is_lower_hex, BlobKey, BlobStore, BlobStream, BlobWriter, Composition, Result, Segment,
    StoreError,
};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Temp files untouched for this long belong to a writer that crashed: a live writer touches its
/// file with every buffer it flushes.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

const HASH_BUFFER: usize = 1024 * 1024;

/// Content-addressed blobs in `<data dir>/blobs/`, staged in `<data dir>/tmp/`.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    /// `<data dir>/blobs/sha256`.
    root: PathBuf,
    /// `<data dir>/tmp`.
    tmp: PathBuf,
}

impl FsBlobStore {
    /// Opens the store under `data_dir`, creating `blobs/` and `tmp/` when absent.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("blobs").join("sha256");
        let tmp = data_dir.join("tmp");
        for dir in [&root, &tmp] {
            fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        }
        Ok(Self { root, tmp })
    }

    /// Where the blob `key` is (or would be) stored; for memory-mapped downloads.
    pub fn path_of(&self, key: &BlobKey) -> PathBuf {
        let hex = key.to_hex();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Removes temp files left by writers that crashed (untouched for an hour); returns how many.
    pub fn remove_stale_temp(&self) -> Result<usize> {
        remove_stale_files(&self.tmp)
    }

    fn open_blob(&self, key: &BlobKey) -> Result<File> {
        let path = self.path_of(key);
        File::open(&path).map_err(|e| missing_or_io(key, &path, e))
    }
}

/// A missing blob is `NotFound`; any other failure is an I/O error naming the file.
fn missing_or_io(key: &BlobKey, path: &Path, e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound(format!("blob {key}"))
    } else {
        io_err(format!("read {}", path.display()))(e)
    }
}

impl BlobStore for FsBlobStore {
    fn create(&self) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(FsBlobWriter {
            file: HashingFile::create_in(&self.tmp, "blob-")?,
            root: self.root.clone(),
        }))
    }

    fn read(&self, key: &BlobKey) -> Result<Vec<u8>> {
        let path = self.path_of(key);
        fs::read(&path).map_err(|e| missing_or_io(key, &path, e))
    }

    fn read_range(&self, key: &BlobKey, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut file = self.open_blob(key)?;
        let context = || format!("read {}", self.path_of(key).display());
        let size = file.metadata().map_err(io_err(context()))?.len();
        let fits = offset.checked_add(len).is_some_and(|end| end <= size);
        let capacity = usize::try_from(len).ok().filter(|_| fits).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "blob {key} holds {size} bytes; {len} bytes at offset {offset} are past its end"
            ))
        })?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err(context()))?;
        let mut out = vec![0; capacity];
        file.read_exact(&mut out).map_err(io_err(context()))?;
        Ok(out)
    }

    fn open_file(&self, key: &BlobKey) -> Result<Option<File>> {
        self.open_blob(key).map(Some)
    }

    fn reader(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.open_blob(key)?))
    }

    fn stream_range(&self, key: &BlobKey, offset: u64, len: u64) -> Result<BlobStream> {
        use tokio::io::AsyncReadExt;
        let mut file = self.open_blob(key)?;
        let context = || format!("read {}", self.path_of(key).display());
        let size = file.metadata().map_err(io_err(context()))?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(StoreError::Corrupt(format!(
                "blob {key} holds {size} bytes; {len} bytes at offset {offset} are past its end"
            )));
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err(context()))?;
        let stretch = tokio::fs::File::from_std(file).take(len);
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            stretch,
            HASH_BUFFER,
        )))
    }

    fn compose(&self, _packages: Vec<Composition>) -> Result<Option<Vec<Segment>>> {
        Ok(None)
    }

    fn download_url(&self, _key: &BlobKey, _file_name: &str) -> Result<Option<String>> {
        Ok(None)
    }

    fn list(&self) -> Result<Vec<BlobKey>> {
        let context = |dir: &Path| format!("list {}", dir.display());
        let mut keys = Vec::new();
        for shard in fs::read_dir(&self.root).map_err(io_err(context(&self.root)))? {
            let shard = shard.map_err(io_err(context(&self.root)))?;
            let shard_name = shard.file_name();
            let Some(prefix) = shard_name.to_str().filter(|n| is_lower_hex(n, 2)) else {
                continue;
            };
            if !shard
                .file_type()
                .map_err(io_err(context(&self.root)))?
                .is_dir()
            {
                continue;
            }
            let dir = shard.path();
            for entry in fs::read_dir(&dir).map_err(io_err(context(&dir)))? {
                let entry = entry.map_err(io_err(context(&dir)))?;
                let name = entry.file_name();
                // Only canonical names in the right shard: anything else is a stray, not a blob.
                let key = name
                    .to_str()
                    .filter(|n| is_lower_hex(n, 64) && n.starts_with(prefix))
                    .and_then(|n| BlobKey::parse(n).ok());
                if let Some(key) = key {
                    if entry.file_type().map_err(io_err(context(&dir)))?.is_file() {
                        keys.push(key);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn size(&self, key: &BlobKey) -> Result<u64> {
        let path = self.path_of(key);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| missing_or_io(key, &path, e))
    }
}

/// A blob being written: a temp file in `tmp/`, hashed as it is written. Dropping it removes the
/// temp file.
struct FsBlobWriter {
    file: HashingFile,
    root: PathBuf,
}

impl Write for FsBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter for FsBlobWriter {
    fn commit(self: Box<Self>) -> Result<(BlobKey, u64)> {
        let FsBlobWriter { file, root } = *self;
        let (key, len, temp) = file.finish()?;
        let temp_path = temp.path().display().to_string();
        temp.as_file()
            .sync_all()
            .map_err(io_err(format!("fsync {temp_path}")))?;
        make_read_only(temp.as_file()).map_err(io_err(format!("chmod {temp_path}")))?;

        let hex = key.to_hex();
        let shard = root.join(&hex[..2]);
        if !shard.is_dir() {
            fs::create_dir_all(&shard).map_err(io_err(format!("create {}", shard.display())))?;
            // The new directory entry must survive a crash as much as the blob in it.
            sync_dir(&root)?;
        }
        let target = shard.join(&hex);
        match temp.persist_noclobber(&target) {
            Ok(_) => sync_dir(&shard)?,
            // Same name, same content: keep the existing blob; the temp file goes with `e`.
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(io_err(format!(
                    "rename {temp_path} to {}",
                    target.display()
                ))(e.error))
            }
        }
        Ok((key, len))
    }
}

#[cfg(unix)]
fn make_read_only(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o444))
}

#[cfg(not(unix))]
fn make_read_only(file: &File) -> io::Result<()> {
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(true);
    file.set_permissions(permissions)
}

/// Makes a rename or a new entry in `dir` durable. Windows cannot open a directory for this and
/// orders its metadata writes itself.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync {}", dir.display())))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes the files in `dir` not touched for an hour: what writers killed mid-write (SIGKILL,
/// power loss) left behind, which nothing else would ever remove. Returns how many.
pub fn remove_stale_files(dir: &Path) -> Result<usize> {
    let context = || format!("clean {}", dir.display());
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io_err(context()))? {
        let entry = entry.map_err(io_err(context()))?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Its writer committed or dropped it while we looked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(context())(e)),
        };
        let idle = meta
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok());
        if meta.is_file() && idle.is_some_and(|idle| idle >= STALE_TEMP_AGE) {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("remove {}", entry.path().display()))(e)),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FsBlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    crate::store::behaviour_tests::blob_store_tests!(store());

    fn entries(dir: &Path) -> Vec<PathBuf> {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect()
    }

    #[test]
    fn layout_and_read_only_mode() {
        let (dir, store) = store();
        let mut w = store.create().unwrap();
        w.write_all(b"hello").unwrap();
        let (key, _) = w.commit().unwrap();
        let path = store.path_of(&key);
        assert_eq!(
            path,
            dir.path().join(
                "blobs/sha256/2c/2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            )
        );
        assert!(fs::metadata(&path).unwrap().permissions().readonly());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o444
            );
        }
        assert!(entries(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn dropped_writer_leaves_no_file() {
        let (dir, store) = store();
        let mut w = store.create().unwrap();
        let buffer = crate::store::hashing_file::WRITE_BUFFER;
        w.write_all(&vec![7u8; buffer * 3]).unwrap();
        assert_eq!(entries(&dir.path().join("tmp")).len(), 1);
        drop(w);
        assert!(entries(&dir.path().join("tmp")).is_empty());
        assert!(entries(&dir.path().join("blobs")).is_empty());
    }

    #[test]
    fn duplicate_commit_keeps_the_existing_file() {
        let (dir, store) = store();
        let commit = |data: &[u8]| {
            let mut w = store.create().unwrap();
            w.write_all(data).unwrap();
            w.commit().unwrap()
        };
        let (key, _) = commit(b"same");
        let inode = |p: &Path| {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                fs::metadata(p).unwrap().ino()
            }
            #[cfg(not(unix))]
            {
                fs::metadata(p).unwrap().len()
            }
        };
        let before = inode(&store.path_of(&key));
        assert_eq!(commit(b"same").0, key);
        assert_eq!(inode(&store.path_of(&key)), before);
        assert!(entries(&dir.path().join("tmp")).is_empty());
        assert_eq!(entries(&dir.path().join("blobs")).len(), 1);
    }

    #[test]
    fn verify_detects_a_flipped_byte() {
        let (_dir, store) = store();
        let mut w = store.create().unwrap();
        w.write_all(b"payload bytes").unwrap();
        let (key, _) = w.commit().unwrap();
        assert!(store.verify(&key).unwrap());

        let path = store.path_of(&key);
        let mut permissions = fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        fs::set_permissions(&path, permissions).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 0x01;
        fs::write(&path, bytes).unwrap();
        assert!(!store.verify(&key).unwrap());
    }

    #[test]
    fn list_ignores_strays() {
        let (dir, store) = store();
        let mut w = store.create().unwrap();
        w.write_all(b"real").unwrap();
        let (key, _) = w.commit().unwrap();
        let root = dir.path().join("blobs/sha256");
        let hex = key.to_hex();
        fs::write(root.join(&hex[..2]).join("notes.txt"), b"x").unwrap();
        fs::write(root.join(&hex[..2]).join(hex.to_uppercase()), b"x").unwrap();
        // A valid name in the wrong shard is not where the store would look for it.
        let other = BlobKey::digest(b"elsewhere").to_hex();
        let wrong = if &other[..2] == "00" { "01" } else { "00" };
        fs::create_dir_all(root.join(wrong)).unwrap();
        fs::write(root.join(wrong).join(&other), b"elsewhere").unwrap();
        fs::write(root.join("README"), b"x").unwrap();
        assert_eq!(store.list().unwrap(), vec![key]);
    }

    #[test]
    fn missing_blob_is_not_found() {
        let (_dir, store) = store();
        let key = BlobKey::digest(b"absent");
        for result in [
            store.read(&key).map(drop),
            store.read_range(&key, 0, 1).map(drop),
            store.open_file(&key).map(drop),
            store.verify(&key).map(drop),
            store.size(&key).map(drop),
        ] {
            assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
        }
    }

    #[test]
    fn stale_temp_files_are_removed_fresh_ones_kept() {
        let (dir, store) = store();
        let tmp = dir.path().join("tmp");
        fs::write(tmp.join("old"), b"x").unwrap();
        fs::write(tmp.join("new"), b"x").unwrap();
        let old = SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(tmp.join("old"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(store.remove_stale_temp().unwrap(), 1);
        assert_eq!(entries(&tmp), vec![tmp.join("new")]);
    }
}
