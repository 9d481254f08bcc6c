//! The emulator's users and groups, and their state file.
//!
//! The store is two vectors in creation order: lists come back in a stable order, and
//! a linear scan over the few thousand resources an emulator holds costs microseconds.
//!
//! The state file (`--state FILE`) is written after every successful change, atomically:
//! the JSON goes to `FILE.tmp` in the same directory (mode 0600), which is fsynced and
//! renamed over `FILE`, then the directory is fsynced. A crash at any point leaves either the old or
//! the new file whole; a stray `FILE.tmp` is never read.

use std::collections::{HashMap, HashSet};
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Store {
    pub users: Vec<UserRecord>,
    pub groups: Vec<GroupRecord>,
}

/// The `format` value that marks a scimguard emulator state file.
const FORMAT: &str = "scimguard-emulator-state";
/// The file layout's version; a newer one is refused rather than misread.
const VERSION: u32 = 1;

/// The file as read: `users` and `groups` are required, so a file that lost one (a
/// hand edit, a cut copy) is refused rather than loaded as empty and then overwritten.
#[derive(Deserialize)]
struct StateFile {
    format: String,
    version: u32,
    users: Option<Vec<UserRecord>>,
    groups: Option<Vec<GroupRecord>>,
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
        Self::from_bytes(&bytes, path)
    }

    /// Parses and checks a state file's bytes; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Store, EmulatorError> {
        let corrupt = |problem: String| EmulatorError::StateCorrupt {
            path: path.to_owned(),
            problem,
        };
        let file: StateFile = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
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
        let invalid = |place: String, problem: String, fix: &str| EmulatorError::StateInvalid {
            path: path.to_owned(),
            place,
            problem,
            fix: fix.to_owned(),
        };
        let missing = |key: &str| {
            invalid(
                "the top-level object".to_owned(),
                format!("the `{key}` key is missing"),
                &format!("add \"{key}\": [] if the store should have none, or restore the file from a backup"),
            )
        };
        let store = Store {
            users: file.users.ok_or_else(|| missing("users"))?,
            groups: file.groups.ok_or_else(|| missing("groups"))?,
        };
        store
            .check()
            .map_err(|(place, problem, fix)| invalid(place, problem, fix))?;
        Ok(store)
    }

    /// What a store must hold to be served as AWS would: unique ids, userNames and
    /// group displayNames (both unique ignoring case, as AWS's 409 treats them), and
    /// members that name users. On the first problem: where, what, and the fix.
    fn check(&self) -> Result<(), (String, String, &'static str)> {
        let user_at = |i: usize| format!("users[{i}] (id \"{}\")", self.users[i].id);
        let group_at = |i: usize| format!("groups[{i}] (id \"{}\")", self.groups[i].id);
        let mut ids: HashMap<&str, String> = HashMap::new();
        let places = (0..self.users.len())
            .map(|i| (self.users[i].id.as_str(), format!("users[{i}]")))
            .chain(
                (0..self.groups.len())
                    .map(|i| (self.groups[i].id.as_str(), format!("groups[{i}]"))),
            );
        for (id, place) in places {
            if let Some(first) = ids.insert(id, place.clone()) {
                return Err((
                    format!("{first} and {place}"),
                    format!("both have the id \"{id}\""),
                    "give one of them another id, or remove one",
                ));
            }
        }
        let mut user_names: HashMap<String, usize> = HashMap::new();
        for (i, user) in self.users.iter().enumerate() {
            let name = &user.data.user_name;
            if name.trim().is_empty() {
                return Err((
                    user_at(i),
                    "its userName is empty".to_owned(),
                    "give the user a userName",
                ));
            }
            if let Some(first) = user_names.insert(name.to_lowercase(), i) {
                return Err((
                    format!("{} and {}", user_at(first), user_at(i)),
                    format!(
                        "both have the userName \"{name}\" (userNames are unique, ignoring case)"
                    ),
                    "rename or remove one of the two users",
                ));
            }
        }
        let mut display_names: HashMap<String, usize> = HashMap::new();
        for (i, group) in self.groups.iter().enumerate() {
            let name = &group.display_name;
            if name.trim().is_empty() {
                return Err((
                    group_at(i),
                    "its displayName is empty".to_owned(),
                    "give the group a displayName",
                ));
            }
            if let Some(first) = display_names.insert(name.to_lowercase(), i) {
                return Err((
                    format!("{} and {}", group_at(first), group_at(i)),
                    format!("both have the displayName \"{name}\" (group displayNames are unique, ignoring case)"),
                    "rename or remove one of the two groups",
                ));
            }
            let mut members: HashSet<&str> = HashSet::new();
            for (m, member) in group.members.iter().enumerate() {
                if !ids
                    .get(member.as_str())
                    .is_some_and(|p| p.starts_with("users["))
                {
                    return Err((
                        format!("{} members[{m}]", group_at(i)),
                        format!("\"{member}\" names no user in `users`"),
                        "remove it from the group's members, or add the user to `users`",
                    ));
                }
                if !members.insert(member) {
                    return Err((
                        format!("{} members[{m}]", group_at(i)),
                        format!("the user \"{member}\" is listed twice"),
                        "remove the repeated member",
                    ));
                }
            }
        }
        Ok(())
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
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // The store holds people's names and addresses: readable by its owner only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    // A temp file left by an older scimguard may have wider permissions.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
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
