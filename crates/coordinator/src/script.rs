//! `hiber_restart_script.sh`: the one command that brings a checkpointed
//! computation back, written after every successful checkpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub(crate) const SCRIPT_NAME: &str = "hiber_restart_script.sh";

/// Quotes `s` for bash: single quotes, with embedded ones spelled `'\''`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script text. `images` are `(host, path)`; they are grouped by host so
/// a multi-host restart can be split by hand if needed.
pub(crate) fn render(
    hiber_exe: &Path,
    default_coord: &str,
    computation: u64,
    generation: u64,
    images: &[(String, String)],
) -> String {
    let mut by_host: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (host, path) in images {
        by_host.entry(host).or_default().push(path);
    }
    let mut s = String::new();
    let _ = write!(
        s,
        "#!/usr/bin/env bash\n\
         # Written by the hiber coordinator after checkpoint generation {generation}\n\
         # of computation {computation:016x}. It restarts every process from its image:\n\
         #   {SCRIPT_NAME} [--coord HOST:PORT] [more `hiber restart` options]\n\
         # The coordinator address defaults to $HIBER_COORD, else {default_coord}.\n\
         set -eu\n\
         coord=\"${{HIBER_COORD:-{default_coord}}}\"\n\
         case \"${{1-}}\" in\n\
         \x20 --coord) coord=\"$2\"; shift 2 ;;\n\
         \x20 --coord=*) coord=\"${{1#--coord=}}\"; shift ;;\n\
         esac\n\
         images=(\n"
    );
    for (host, mut paths) in by_host {
        paths.sort_unstable();
        let _ = writeln!(s, "  # host {host}: {} process(es)", paths.len());
        for p in paths {
            let _ = writeln!(s, "  {}", quote(p));
        }
    }
    let exe = quote(&hiber_exe.to_string_lossy());
    let _ = writeln!(
        s,
        ")\nexec {exe} restart --coord \"$coord\" \"$@\" \"${{images[@]}}\""
    );
    s
}

/// Writes `contents` as `dir/hiber_restart_script.sh`, mode 0755, through a
/// temporary file and a rename so a reader never sees half a script.
pub(crate) fn write(dir: &Path, contents: &str) -> io::Result<PathBuf> {
    let path = dir.join(SCRIPT_NAME);
    let tmp = dir.join(format!(".{SCRIPT_NAME}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_host_and_quotes() {
        let images = vec![
            ("b".to_string(), "/d/ckpt_y_2.hiber".to_string()),
            ("a".to_string(), "/d/it's.hiber".to_string()),
            ("b".to_string(), "/d/ckpt_x_1.hiber".to_string()),
        ];
        let s = render(
            Path::new("/usr/bin/hiber"),
            "127.0.0.1:7779",
            0xab,
            3,
            &images,
        );
        let a = s.find("# host a: 1").unwrap();
        let b = s.find("# host b: 2").unwrap();
        assert!(a < b);
        assert!(s.contains(r"'/d/it'\''s.hiber'"));
        assert!(s.find("ckpt_x_1").unwrap() < s.find("ckpt_y_2").unwrap());
        assert!(s.contains("coord=\"${HIBER_COORD:-127.0.0.1:7779}\""));
        assert!(s.contains("exec '/usr/bin/hiber' restart --coord \"$coord\""));
    }

    #[test]
    fn script_is_valid_bash() {
        let dir = std::env::temp_dir().join(format!("hiber-script-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let images = vec![("h".to_string(), "/x/a b.hiber".to_string())];
        // `echo` stands in for hiber: the script must pass the images as words.
        let s = render(Path::new("/bin/echo"), "127.0.0.1:1", 1, 1, &images);
        let path = write(&dir, &s).unwrap();
        let out = std::process::Command::new("bash")
            .arg(&path)
            .args(["--coord", "h:9", "--x"])
            .env_remove("HIBER_COORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "restart --coord h:9 --x /x/a b.hiber\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
