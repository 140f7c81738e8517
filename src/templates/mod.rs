//! Installer templates (CONTRACT 3): load `installer-templates/` or the built-in copy once, then
//! render the files of a department package for an OS, many times, with a [`RenderContext`].
//!
//! `common/` goes into every package and `windows/`, `macos/`, `linux/` into packages of that OS
//! family; an OS file replaces a common file of the same output name. Files ending in `.tera`
//! are rendered with Tera and lose the suffix; others are copied byte for byte. Every template
//! is parsed at load, so syntax errors surface before any build.
//!
//! This module never does I/O while rendering, never pastes org-supplied text into a script
//! unquoted (the default templates quote through `ps_quote`, `sh_quote` and `properties_escape`),
//! and never HTML-escapes: its outputs are scripts and text files.

mod builtin;
mod context;
mod error;
mod filters;

pub use context::{
    is_vendor_key, BackupContext, OrgContext, PayloadContext, PlatformContext, ReleaseContext,
    RenderContext, ServerContext, DEPOT_KEY_PREFIX,
};
pub use error::{Result, TemplateError};

use crate::domain::{EntryName, Os, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Template files are scripts, text and small images; anything bigger is a mistake.
pub const MAX_TEMPLATE_FILE_SIZE: u64 = 8 * 1024 * 1024;

const TERA_SUFFIX: &str = ".tera";

/// The file depot itself writes into every package; no template may produce it.
const RESERVED_OUTPUT: &str = "depot-package.json";

/// A top-level folder of a templates directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Folder {
    Common,
    Os(Os),
}

impl Folder {
    const NAMES: &'static str = "common/, windows/, macos/ and linux/";

    fn parse(name: &str) -> Option<Self> {
        match name {
            "common" => Some(Folder::Common),
            "windows" => Some(Folder::Os(Os::Windows)),
            "macos" => Some(Folder::Os(Os::Macos)),
            "linux" => Some(Folder::Os(Os::Linux)),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Folder::Common => "common",
            Folder::Os(os) => os.as_str(),
        }
    }
}

/// One file of a templates directory, before parsing.
struct SourceFile {
    folder: Folder,
    /// The `/`-separated path inside the folder, e.g. `install.ps1.tera`.
    path: String,
    bytes: Vec<u8>,
}

impl SourceFile {
    /// `windows/install.ps1.tera`: the Tera template name and the path errors show.
    fn full_path(&self) -> String {
        format!("{}/{}", self.folder.as_str(), self.path)
    }
}

/// How one output file is produced.
#[derive(Debug, Clone)]
enum Content {
    /// Rendered by the Tera template of this name.
    Render(String),
    /// Copied as is.
    Copy(Arc<[u8]>),
}

#[derive(Debug, Clone)]
struct Output {
    name: EntryName,
    content: Content,
}

/// A file of a department package, rendered or copied from the templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub name: EntryName,
    pub bytes: Vec<u8>,
}

/// A loaded and parsed set of installer templates, rendered many times.
pub struct TemplateSet {
    tera: tera::Tera,
    /// The source of every Tera template by name, to find the line of a render error.
    sources: HashMap<String, String>,
    /// What a package of each OS holds, sorted by output name.
    windows: Vec<Output>,
    macos: Vec<Output>,
    linux: Vec<Output>,
    digest: Sha256,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet")
            .field("digest", &self.digest)
            .field("templates", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl TemplateSet {
    /// Reads and parses a templates directory (`common/`, `windows/`, `macos/`, `linux/`).
    /// Hidden top-level entries (`.git`, ...) are ignored; anything else unknown is refused.
    ///
    /// Symbolic links are refused, and so is anything that resolves outside `dir`: a link to the
    /// signing key would otherwise ship the secret inside every package. The directory itself
    /// may be reached through a link.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let root = dir
            .canonicalize()
            .map_err(|e| TemplateError::io("read", dir)(e))?;
        let walker = walkdir::WalkDir::new(&root)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                !(e.depth() == 1 && e.file_name().to_string_lossy().starts_with('.'))
            });
        let mut folder = Folder::Common;
        for entry in walker {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&root).to_path_buf();
                TemplateError::io("read", path)(e.into())
            })?;
            let shown = entry.path().strip_prefix(&root).unwrap_or(entry.path());
            let shown = shown.to_string_lossy().replace('\\', "/");
            if entry.path_is_symlink() {
                return Err(TemplateError::layout(
                    shown,
                    "is a symbolic link; installer templates must be regular files inside the \
                     templates directory (copy the file in instead)",
                ));
            }
            if entry.depth() == 1 {
                let name = entry.file_name().to_str().and_then(Folder::parse);
                folder = match name {
                    Some(f) if entry.file_type().is_dir() => f,
                    _ => {
                        return Err(TemplateError::layout(
                            shown,
                            format!(
                                "unknown entry; a templates directory holds only {}",
                                Folder::NAMES
                            ),
                        ))
                    }
                };
                continue;
            }
            if entry.file_type().is_dir() {
                continue;
            }
            if !entry.file_type().is_file() {
                return Err(TemplateError::layout(shown, "not a regular file"));
            }
            let len = entry
                .metadata()
                .map_err(|e| TemplateError::io("read", entry.path())(e.into()))?
                .len();
            if len > MAX_TEMPLATE_FILE_SIZE {
                return Err(TemplateError::layout(
                    shown,
                    format!("larger than {MAX_TEMPLATE_FILE_SIZE} bytes"),
                ));
            }
            let path = match shown.split_once('/') {
                Some((_, inside)) => inside.to_string(),
                None => shown.clone(),
            };
            let bytes = read_inside(&root, entry.path(), &shown)?;
            files.push(SourceFile {
                folder,
                path,
                bytes,
            });
        }
        Self::from_files(files)
    }

    /// The default templates compiled into the binary.
    pub fn builtin() -> Self {
        // The embedded files are fixed at compile time and a unit test loads them, so this
        // cannot fail at run time.
        Self::from_files(builtin_files()).expect("the built-in templates load (tested)")
    }

    /// Writes the default templates into `dir` for `depot init`. Refuses when `dir` exists;
    /// the files appear all together (written beside it, then renamed into place) or not at all.
    pub fn write_builtin(dir: &Path) -> Result<()> {
        if dir.symlink_metadata().is_ok() {
            return Err(TemplateError::layout(
                dir.display().to_string(),
                "already exists; depot does not overwrite installer templates",
            ));
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(TemplateError::io("create", parent))?;
        let staging = tempfile::Builder::new()
            .prefix(".installer-templates.")
            .tempdir_in(parent)
            .map_err(TemplateError::io("create a directory in", parent))?;
        for (path, bytes) in builtin::FILES {
            let target = staging.path().join(path);
            if let Some(folder) = target.parent() {
                std::fs::create_dir_all(folder).map_err(TemplateError::io("create", folder))?;
            }
            std::fs::write(&target, bytes).map_err(TemplateError::io("write", &target))?;
            #[cfg(unix)]
            if is_script(path) {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                    .map_err(TemplateError::io("set the mode of", &target))?;
            }
        }
        std::fs::rename(staging.path(), dir).map_err(TemplateError::io("create", dir))?;
        // The staging directory is now `dir`: keep it.
        let _ = staging.keep();
        Ok(())
    }

    /// The digest of every (folder, path, bytes): equal digests render equal packages.
    pub fn digest(&self) -> Sha256 {
        self.digest
    }

    /// The files of a package for `os`, sorted by name.
    pub fn render(&self, os: Os, ctx: &RenderContext) -> Result<Vec<RenderedFile>> {
        let context = tera::Context::from_serialize(ctx)
            .map_err(|e| TemplateError::Context(e.to_string()))?;
        self.outputs(os)
            .iter()
            .map(|output| {
                let bytes = match &output.content {
                    Content::Copy(bytes) => bytes.to_vec(),
                    Content::Render(template) => self
                        .tera
                        .render(template, &context)
                        .map_err(|e| {
                            error::render_error(&e, template, |name| {
                                self.sources.get(name).map(String::as_str)
                            })
                        })?
                        .into_bytes(),
                };
                Ok(RenderedFile {
                    name: output.name.clone(),
                    bytes,
                })
            })
            .collect()
    }

    /// The output names of a package for `os`, sorted.
    pub fn output_names(&self, os: Os) -> impl Iterator<Item = &EntryName> {
        self.outputs(os).iter().map(|o| &o.name)
    }

    fn outputs(&self, os: Os) -> &[Output] {
        match os {
            Os::Windows => &self.windows,
            Os::Macos => &self.macos,
            Os::Linux => &self.linux,
        }
    }

    fn from_files(mut files: Vec<SourceFile>) -> Result<Self> {
        files.sort_by(|a, b| (a.folder, &a.path).cmp(&(b.folder, &b.path)));

        let digest = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            for f in &files {
                for part in [f.folder.as_str().as_bytes(), f.path.as_bytes(), &f.bytes] {
                    h.update((part.len() as u64).to_be_bytes());
                    h.update(part);
                }
            }
            Sha256::from_bytes(h.finalize().into())
        };

        let mut tera = tera::Tera::default();
        // Outputs are scripts and text: HTML escaping would corrupt them.
        tera.autoescape_on(Vec::new());
        filters::register(&mut tera);

        let mut sources = HashMap::new();
        let mut by_folder: BTreeMap<Folder, BTreeMap<EntryName, Output>> = BTreeMap::new();
        for file in files {
            let full = file.full_path();
            let (output_name, is_template) = match file.path.strip_suffix(TERA_SUFFIX) {
                Some(stem) => (stem, true),
                None => (file.path.as_str(), false),
            };
            let name = EntryName::parse(output_name)
                .map_err(|e| TemplateError::layout(&full, format!("its output name {e}")))?;
            if name.as_str() == RESERVED_OUTPUT {
                return Err(TemplateError::layout(
                    &full,
                    format!("{RESERVED_OUTPUT} is written by depot itself"),
                ));
            }
            let content = if is_template {
                let text = String::from_utf8(file.bytes).map_err(|_| {
                    TemplateError::layout(&full, "a .tera template must be UTF-8 text")
                })?;
                sources.insert(full.clone(), text);
                Content::Render(full.clone())
            } else {
                Content::Copy(file.bytes.into())
            };
            let outputs = by_folder.entry(file.folder).or_default();
            if outputs.contains_key(&name) {
                return Err(TemplateError::layout(
                    &full,
                    format!(
                        "another file of {}/ also produces {name}",
                        file.folder.as_str()
                    ),
                ));
            }
            outputs.insert(name.clone(), Output { name, content });
        }
        tera.add_raw_templates(sources.iter().map(|(n, s)| (n.as_str(), s.as_str())))
            .map_err(|e| error::parse_error(&e))?;

        let common = by_folder.remove(&Folder::Common).unwrap_or_default();
        let mut for_os = |os: Os| -> Vec<Output> {
            let mut outputs = common.clone();
            outputs.extend(by_folder.remove(&Folder::Os(os)).unwrap_or_default());
            outputs.into_values().collect()
        };
        Ok(TemplateSet {
            windows: for_os(Os::Windows),
            macos: for_os(Os::Macos),
            linux: for_os(Os::Linux),
            tera,
            sources,
            digest,
        })
    }
}

/// Reads a template file that must still be a regular file inside `root` when it is opened (a
/// file swapped for a link after the walk saw it is refused too).
fn read_inside(root: &Path, path: &Path, shown: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let outside = || {
        TemplateError::layout(
            shown,
            "resolves outside the templates directory; installer templates must be regular \
             files inside it",
        )
    };
    let resolved = path
        .canonicalize()
        .map_err(TemplateError::io("read", path))?;
    if !resolved.starts_with(root) {
        return Err(outside());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        let is_link = e.raw_os_error() == Some(libc::ELOOP);
        #[cfg(not(unix))]
        let is_link = false;
        if is_link {
            TemplateError::layout(shown, "is a symbolic link; installer templates must be regular files inside the templates directory")
        } else {
            TemplateError::io("read", path)(e)
        }
    })?;
    let metadata = file.metadata().map_err(TemplateError::io("read", path))?;
    if !metadata.is_file() {
        return Err(TemplateError::layout(shown, "not a regular file"));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(MAX_TEMPLATE_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(TemplateError::io("read", path))?;
    if bytes.len() as u64 > MAX_TEMPLATE_FILE_SIZE {
        return Err(TemplateError::layout(
            shown,
            format!("larger than {MAX_TEMPLATE_FILE_SIZE} bytes"),
        ));
    }
    Ok(bytes)
}

fn is_script(path: &str) -> bool {
    let path = path.strip_suffix(TERA_SUFFIX).unwrap_or(path);
    path.ends_with(".sh") || path.ends_with(".command")
}

fn builtin_files() -> Vec<SourceFile> {
    builtin::FILES
        .iter()
        .filter_map(|(full, bytes)| {
            let (folder, path) = full.split_once('/')?;
            Some(SourceFile {
                folder: Folder::parse(folder)?,
                path: path.to_string(),
                bytes: bytes.to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
