//! The emulator's users and groups, and their state file.
//!
//! The store is two vectors in creation order: lists come back in a stable order, and
//! a linear scan over the few thousand resources an emulator holds costs microseconds.
//!
//! The state file (`--state FILE`) is written after every successful change, atomically:
//! the JSON goes to `FILE.tmp` in the same directory, which is fsynced and renamed over
//! `FILE`, then the directory is fsynced. A crash at any point leaves either the old or
//! the new file whole; a stray `FILE.tmp` is never read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::users::UserData;
use super::EmulatorError;

/// One user: the id and times AWS assigns, and the attributes the client set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserRecord {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub last_modified: u64,
    pub data: UserData,
}

/// One group. AWS never returns its members; they answer member filters only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupRecord {
    pub id: String,
    pub created: u64,
    pub last_modified: u64,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// User ids, in the order they were added, each once.
    #[serde(default)]
    pub members: Vec<String>,
}

/// Every user and group of the tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Store {
    #[serde(default)]
    pub users: Vec<UserRecord>,
    #[serde(default)]
    pub groups: Vec<GroupRecord>,
}

/// The `format` value that marks a scimguard emulator state file.
const FORMAT: &str = "scimguard-emulator-state";
/// The file layout's version; a newer one is refused rather than misread.
const VERSION: u32 = 1;

#[derive(Deserialize)]
struct StateFile {
    format: String,
    version: u32,
    #[serde(flatten)]
    store: Store,
}

/// What is written: [`StateFile`] borrowing the store instead of copying it.
#[derive(Serialize)]
struct StateFileRef<'a> {
    format: &'a str,
    version: u32,
    #[serde(flatten)]
    store: &'a Store,
}

impl Store {
    pub fn user(&self, id: &str) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.id == id)
    }

    pub fn user_mut(&mut self, id: &str) -> Option<&mut UserRecord> {
        self.users.iter_mut().find(|u| u.id == id)
    }

    pub fn group(&self, id: &str) -> Option<&GroupRecord> {
        self.groups.iter().find(|g| g.id == id)
    }

    pub fn group_mut(&mut self, id: &str) -> Option<&mut GroupRecord> {
        self.groups.iter_mut().find(|g| g.id == id)
    }

    /// The state file's bytes.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let file = StateFileRef {
            format: FORMAT,
            version: VERSION,
            store: self,
        };
        // Strings, numbers and vectors only: serializing cannot fail.
        serde_json::to_vec_pretty(&file).unwrap_or_default()
    }

    /// Reads a state file; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<Store, EmulatorError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Store::default()),
            Err(source) => {
                return Err(EmulatorError::StateRead {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let corrupt = |problem: String| EmulatorError::StateCorrupt {
            path: path.to_owned(),
            problem,
        };
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.format != FORMAT {
            return Err(corrupt(format!(
                "`format` is \"{}\", not \"{FORMAT}\"",
                file.format
            )));
        }
        if file.version != VERSION {
            return Err(corrupt(format!(
                "layout version {} is not the version {VERSION} this scimguard reads",
                file.version
            )));
        }
        let store = file.store;
        let mut ids: Vec<&str> = store
            .users
            .iter()
            .map(|u| u.id.as_str())
            .chain(store.groups.iter().map(|g| g.id.as_str()))
            .collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(corrupt(format!("the id {} is used twice", w[0])));
        }
        Ok(store)
    }
}

/// `FILE.tmp`, beside `FILE`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file whole.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    sync_dir(path)
}

/// Makes the rename durable: fsync the directory that holds the file.
#[cfg(unix)]
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> io::Result<()> {
    Ok(())
}

/// Writes snapshots in order: a slow writer of an older snapshot never overwrites a
/// newer one.
pub(crate) struct Persister {
    path: PathBuf,
    /// The version of the snapshot on disk.
    written: Mutex<u64>,
}

impl Persister {
    pub fn new(path: PathBuf, version: u64) -> Self {
        Persister {
            path,
            written: Mutex::new(version),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes snapshot `version` unless a newer one is already on disk. Blocking.
    pub fn save(&self, version: u64, bytes: &[u8]) -> io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if version <= *written {
            return Ok(());
        }
        write_atomically(&self.path, bytes)?;
        *written = version;
        Ok(())
    }
}
