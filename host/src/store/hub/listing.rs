//! The repository listing (`GET {endpoint}/api/models/{name}/revision/{revision}?blobs=true`) and
//! which of its files to take.
//!
//! Nothing in the listing is trusted: the commit must be 40 lowercase hex digits, every file name
//! a relative `/`-separated path without empty, `.` or `..` parts (a listing naming any other
//! path is refused whole), and each file taken needs a size and a hash (`lfs.sha256` for LFS
//! files, else `blobId`, the git blob sha1): a file without them fails closed. Only files a
//! backend reads are taken: config and tokenizer files, sentence-transformers module configs and
//! one set of weights in a format this host loads (never `pytorch_model.bin`).

use std::collections::HashSet;

use serde::Deserialize;

use super::verify::Expected;

/// Longest file name (whole path) accepted from a listing, in bytes.
const MAX_FILE_NAME: usize = 1024;
/// Longest part of a file name, in bytes.
const MAX_NAME_PART: usize = 255;
/// Most files a listing may name.
const MAX_FILES: usize = 100_000;

/// Files a model may need besides its weights.
const SMALL_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

/// Weights formats a backend loads (a requirement's `weights_file` must have one of these).
pub const WEIGHTS_EXTENSIONS: &[&str] = &[".safetensors", ".gguf"];

/// A checked repository listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The commit the revision points at: 40 lowercase hex digits.
    pub commit: String,
    /// Every file of the repository, names checked.
    pub files: Vec<ListedFile>,
}

/// One file of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    /// The path inside the repository (checked with [`check_file_name`]).
    pub name: String,
    /// Its size in bytes, when the listing says.
    pub size: Option<u64>,
    /// Its hash, when the listing says (well formed).
    pub hash: Option<Expected>,
}

/// A file to take, with what the listing promised about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The path inside the repository.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its hash; also its blob's name in the store.
    pub expected: Expected,
}

/// Why a listing cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The repository lacks what the model needs (the hub's answer is fine).
    Missing(Missing),
    /// The answer is unsafe or inconsistent: `file` names what (or the listing itself).
    Unsafe {
        /// The file concerned, or `repository listing`.
        file: String,
        /// What is wrong.
        reason: String,
    },
}

/// What a repository lacks that the model needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// It has no `config.json`.
    #[error("it has no config.json")]
    Config,
    /// It has no file of the name the requirement's `weights_file` gives.
    #[error("it has no file {0}")]
    WeightsFile(String),
    /// It holds several `.gguf` files and the requirement names none.
    #[error("it holds {0} .gguf files; name one with the requirement's weights_file")]
    WhichGguf(usize),
    /// It holds no weights in a format this host reads.
    #[error(
        "it has no weights this host reads (model.safetensors, sharded safetensors, \
         one .gguf file; pytorch_model.bin is not read)"
    )]
    Weights,
}

/// Why a sibling's size or hash cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Announced {
    /// Its `blobId` is not a git hash.
    #[error("its blobId '{}' is not 40 lowercase hex digits", .0.escape_debug())]
    BlobId(String),
    /// Its `lfs.sha256` is not a sha256.
    #[error("its lfs.sha256 '{}' is not 64 lowercase hex digits", .0.escape_debug())]
    Sha256(String),
    /// It has two different sizes.
    #[error("the listing gives it two sizes ({size} and lfs.size {lfs_size})")]
    TwoSizes {
        /// Its `size`.
        size: u64,
        /// Its `lfs.size`.
        lfs_size: u64,
    },
}

/// What the listing names when a problem concerns it as a whole.
pub const LISTING: &str = "repository listing";

#[derive(Deserialize)]
struct RawListing {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<RawSibling>,
}

#[derive(Deserialize)]
struct RawSibling {
    rfilename: String,
    size: Option<u64>,
    #[serde(rename = "blobId")]
    blob_id: Option<String>,
    lfs: Option<RawLfs>,
}

#[derive(Deserialize)]
struct RawLfs {
    sha256: Option<String>,
    size: Option<u64>,
}

/// Parses and checks a listing's JSON body.
pub fn parse(body: &[u8]) -> Result<Listing, Refusal> {
    let unsafe_listing = |reason: String| Refusal::Unsafe {
        file: LISTING.into(),
        reason,
    };
    let raw: RawListing = serde_json::from_slice(body)
        .map_err(|e| unsafe_listing(format!("the listing is not the JSON the Hub sends: {e}")))?;
    let commit = raw.sha.unwrap_or_default();
    if !is_hex(&commit, 40) {
        return Err(unsafe_listing(format!(
            "the listing's commit '{}' is not 40 lowercase hex digits",
            commit.escape_debug()
        )));
    }
    if raw.siblings.len() > MAX_FILES {
        return Err(unsafe_listing(format!(
            "the listing names more than {MAX_FILES} files"
        )));
    }
    let mut seen = HashSet::new();
    let mut files = Vec::with_capacity(raw.siblings.len());
    for sibling in raw.siblings {
        check_file_name(&sibling.rfilename).map_err(|reason| {
            unsafe_listing(format!(
                "the listing names the file '{}', which {reason}",
                sibling.rfilename.escape_debug()
            ))
        })?;
        if !seen.insert(sibling.rfilename.clone()) {
            return Err(unsafe_listing(format!(
                "the listing names '{}' twice",
                sibling.rfilename
            )));
        }
        let (size, hash) = announced(&sibling).map_err(|refused| Refusal::Unsafe {
            file: sibling.rfilename.clone(),
            reason: refused.to_string(),
        })?;
        files.push(ListedFile {
            name: sibling.rfilename,
            size,
            hash,
        });
    }
    Ok(Listing { commit, files })
}

/// The size and hash a sibling announces: `lfs.sha256` and `lfs.size` for an LFS file (whose
/// `blobId` is the hash of its pointer, not of its content), else `blobId` and `size`. Absent
/// values stay `None`; malformed or contradicting ones are refused.
fn announced(sibling: &RawSibling) -> Result<(Option<u64>, Option<Expected>), Announced> {
    let Some(lfs) = &sibling.lfs else {
        let hash = match &sibling.blob_id {
            Some(id) if is_hex(id, 40) => Some(Expected::GitSha1(id.clone())),
            Some(id) => return Err(Announced::BlobId(id.clone())),
            None => None,
        };
        return Ok((sibling.size, hash));
    };
    let hash = match &lfs.sha256 {
        Some(sha) if is_hex(sha, 64) => Some(Expected::Sha256(sha.clone())),
        Some(sha) => return Err(Announced::Sha256(sha.clone())),
        None => None,
    };
    match (sibling.size, lfs.size) {
        (Some(size), Some(lfs_size)) if size != lfs_size => {
            Err(Announced::TwoSizes { size, lfs_size })
        }
        (a, b) => Ok((b.or(a), hash)),
    }
}

/// Why a file name is refused; the message follows "which" (or the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    /// It is empty or longer than 1024 bytes.
    #[error("is empty or longer than {} bytes", MAX_FILE_NAME)]
    Length,
    /// It starts with `/`.
    #[error("is an absolute path")]
    Absolute,
    /// It holds a backslash, NUL or other control character.
    #[error("holds a backslash or a control character")]
    Character,
    /// A part is empty, `.` or `..`.
    #[error("has an empty, '.' or '..' part")]
    DotPart,
    /// A part is longer than 255 bytes.
    #[error("has a part longer than {} bytes", MAX_NAME_PART)]
    LongPart,
}

/// Checks a file name from the hub: relative, `/`-separated, no empty, `.` or `..` part, no
/// backslash, NUL or other control character, at most 1024 bytes (255 a part).
pub fn check_file_name(name: &str) -> Result<(), FileNameError> {
    if name.is_empty() || name.len() > MAX_FILE_NAME {
        return Err(FileNameError::Length);
    }
    if name.starts_with('/') {
        return Err(FileNameError::Absolute);
    }
    if name.contains('\\') || name.chars().any(char::is_control) {
        return Err(FileNameError::Character);
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(FileNameError::DotPart);
        }
        if part.len() > MAX_NAME_PART {
            return Err(FileNameError::LongPart);
        }
    }
    Ok(())
}

/// Whether a requirement's `weights_file` names a format a backend loads.
pub fn is_weights_format(name: &str) -> bool {
    WEIGHTS_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

/// Which files of `listing` to take: the small config and tokenizer files, the
/// sentence-transformers module configs (`N_Name/config.json`), and one set of weights
/// (`weights_file` when given, else `model.safetensors`, a sharded index and its shards, or a
/// single `.gguf`), each with its announced size and hash.
pub fn select(listing: &Listing, weights_file: Option<&str>) -> Result<Vec<Wanted>, Refusal> {
    let available: Vec<&str> = listing.files.iter().map(|f| f.name.as_str()).collect();
    let names = needed_files(&available, weights_file).map_err(Refusal::Missing)?;
    names
        .into_iter()
        .map(|name| {
            let file = listing
                .files
                .iter()
                .find(|f| f.name == name)
                .expect("selected from the listing");
            match (file.size, &file.hash) {
                (Some(size), Some(expected)) => Ok(Wanted {
                    name,
                    size,
                    expected: expected.clone(),
                }),
                _ => Err(Refusal::Unsafe {
                    file: name,
                    reason: "the listing gives no size or no hash for it (asked with \
                             ?blobs=true), so it cannot be checked"
                        .into(),
                }),
            }
        })
        .collect()
}

/// The names to take (see [`select`]), or what is missing.
fn needed_files(available: &[&str], weights_file: Option<&str>) -> Result<Vec<String>, Missing> {
    let has = |f: &str| available.contains(&f);
    let top_level = |f: &&str| !f.contains('/');
    let mut wanted: Vec<String> = available
        .iter()
        .filter(|f| {
            SMALL_FILES.contains(f)
                || f.strip_suffix("/config.json")
                    .is_some_and(|module| !module.contains('/'))
        })
        .map(|f| f.to_string())
        .collect();
    if !has("config.json") {
        return Err(Missing::Config);
    }
    let ggufs: Vec<&str> = available
        .iter()
        .copied()
        .filter(top_level)
        .filter(|f| f.ends_with(".gguf"))
        .collect();
    if let Some(file) = weights_file {
        if !has(file) {
            return Err(Missing::WeightsFile(file.to_string()));
        }
        wanted.push(file.to_string());
    } else if has("model.safetensors") {
        wanted.push("model.safetensors".into());
    } else if has("model.safetensors.index.json") {
        wanted.push("model.safetensors.index.json".into());
        wanted.extend(
            available
                .iter()
                .copied()
                .filter(top_level)
                .filter(|f| f.starts_with("model-") && f.ends_with(".safetensors"))
                .map(|f| f.to_string()),
        );
    } else if ggufs.len() == 1 {
        wanted.push(ggufs[0].to_string());
    } else if ggufs.len() > 1 {
        return Err(Missing::WhichGguf(ggufs.len()));
    } else {
        return Err(Missing::Weights);
    }
    Ok(wanted)
}

/// Whether `text` is exactly `len` lowercase hex digits.
fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    const SHA1: &str = "ce013625030ba8dba906f756967f9e9ca394464a";
    const SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn listing(files: &[&str]) -> Listing {
        Listing {
            commit: COMMIT.into(),
            files: files
                .iter()
                .map(|f| ListedFile {
                    name: f.to_string(),
                    size: Some(1),
                    hash: Some(Expected::GitSha1(SHA1.into())),
                })
                .collect(),
        }
    }

    fn names(listing: &Listing, weights_file: Option<&str>) -> Result<Vec<String>, Refusal> {
        select(listing, weights_file).map(|w| w.into_iter().map(|w| w.name).collect())
    }

    fn json(value: serde_json::Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    #[test]
    fn picks_configs_and_one_set_of_weights() {
        let repo = listing(&[
            "config.json",
            "tokenizer.json",
            "1_Pooling/config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "onnx/model.onnx",
            "onnx/nested/config.json",
            "README.md",
            "2_Dense/config.json",
        ]);
        assert_eq!(
            names(&repo, None).unwrap(),
            [
                "config.json",
                "tokenizer.json",
                "1_Pooling/config.json",
                "2_Dense/config.json",
                "model.safetensors"
            ]
        );
        let sharded = listing(&[
            "config.json",
            "model.safetensors.index.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "pytorch_model.bin",
        ]);
        assert_eq!(names(&sharded, None).unwrap().len(), 4);
        let gguf = listing(&["config.json", "tokenizer.json", "m.Q4_1.gguf"]);
        assert!(names(&gguf, None).unwrap().contains(&"m.Q4_1.gguf".into()));
        assert!(matches!(
            names(&listing(&["config.json", "model.onnx"]), None),
            Err(Refusal::Missing(_))
        ));
        assert!(names(&listing(&["model.safetensors"]), None).is_err());
    }

    #[test]
    fn pytorch_weights_are_never_taken() {
        let Err(Refusal::Missing(reason)) =
            names(&listing(&["config.json", "pytorch_model.bin"]), None)
        else {
            panic!("a .bin-only repository was accepted");
        };
        assert_eq!(reason, Missing::Weights);
        assert!(reason.to_string().contains("pytorch_model.bin"), "{reason}");
    }

    #[test]
    fn a_named_weights_file_picks_one_of_several() {
        let repo = listing(&["config.json", "m.Q4_1.gguf", "m.Q8_0.gguf"]);
        let Err(Refusal::Missing(reason)) = names(&repo, None) else {
            panic!("two ggufs without a name were accepted");
        };
        assert_eq!(reason, Missing::WhichGguf(2));
        assert!(reason.to_string().contains("weights_file"));
        assert_eq!(
            names(&repo, Some("m.Q8_0.gguf")).unwrap(),
            ["config.json", "m.Q8_0.gguf"]
        );
        assert!(names(&repo, Some("m.F16.gguf")).is_err());
        assert!(is_weights_format("a/b.gguf") && !is_weights_format("pytorch_model.bin"));
    }

    #[test]
    fn file_names_must_stay_inside_the_snapshot() {
        for bad in [
            "",
            "/etc/x",
            "../../evil",
            "a/../../b",
            "a/./b",
            "a//b",
            "a/",
            ".",
            "a\\..\\b",
            "a\0b",
            "a\nb",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_file_name(&"a/".repeat(600)).is_err());
        for good in [
            "config.json",
            "1_Pooling/config.json",
            ".gitattributes",
            "a..b",
        ] {
            assert_eq!(check_file_name(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn listings_are_checked_whole() {
        let sibling =
            |name: &str| serde_json::json!({"rfilename": name, "size": 1, "blobId": SHA1});
        let ok = parse(&json(serde_json::json!({
            "sha": COMMIT,
            "siblings": [sibling("config.json"), {
                "rfilename": "model.safetensors", "size": 5, "blobId": SHA1,
                "lfs": {"sha256": SHA256, "size": 5}
            }]
        })))
        .unwrap();
        assert_eq!(ok.commit, COMMIT);
        assert_eq!(ok.files[1].hash, Some(Expected::Sha256(SHA256.into())));
        assert_eq!(ok.files[0].hash, Some(Expected::GitSha1(SHA1.into())));
        let refused = |value: serde_json::Value| match parse(&json(value)) {
            Err(Refusal::Unsafe { reason, .. }) => reason,
            other => panic!("accepted: {other:?}"),
        };
        for commit in ["../x", "0123", &COMMIT.to_uppercase(), ""] {
            refused(serde_json::json!({"sha": commit, "siblings": []}));
        }
        refused(serde_json::json!({"siblings": []}));
        for name in ["../../evil", "/etc/x", "a/../../b"] {
            let reason = refused(serde_json::json!({"sha": COMMIT, "siblings": [sibling(name)]}));
            assert!(reason.contains(name), "{reason}");
        }
        refused(serde_json::json!({"sha": COMMIT, "siblings": [sibling("a"), sibling("a")]}));
        refused(serde_json::json!({"sha": COMMIT, "siblings": [
            {"rfilename": "a", "size": 1, "blobId": "../../x"}]}));
        refused(serde_json::json!({"sha": COMMIT, "siblings": [
            {"rfilename": "a", "size": 1, "lfs": {"sha256": "/etc/passwd", "size": 1}}]}));
        refused(serde_json::json!({"sha": COMMIT, "siblings": [
            {"rfilename": "a", "size": 1, "lfs": {"sha256": SHA256, "size": 2}}]}));
        refused(serde_json::json!({"sha": 5}));
    }

    #[test]
    fn a_file_without_size_or_hash_fails_closed() {
        let bare = parse(&json(serde_json::json!({
            "sha": COMMIT,
            "siblings": [{"rfilename": "config.json"}, {"rfilename": "model.safetensors", "size": 3}]
        })))
        .unwrap();
        assert!(matches!(
            select(&bare, None),
            Err(Refusal::Unsafe { file, .. }) if file == "config.json"
        ));
    }
}
