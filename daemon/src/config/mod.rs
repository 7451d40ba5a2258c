//! The daemon config (`dbferry.toml`, CONTRACT §2).

mod fields;
mod secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use fields::{parse, Fields, Spanned};
pub use secret::Secret;

use crate::codes::ErrorCode;
use crate::diag::{Diagnostic, Diagnostics, Source};

/// Where the config lives when neither `--config` nor `$DBFERRY_CONFIG` says.
pub const DEFAULT_CONFIG: &str = "/etc/dbferry/dbferry.toml";

/// The whole config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `[daemon]`.
    pub daemon: DaemonSettings,
    /// `[[instances]]`.
    pub instances: Vec<Instance>,
    /// `[[access_keys]]`.
    pub access_keys: Vec<AccessKey>,
}

/// `[daemon]`: where the daemon listens and keeps its files.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    /// HTTP address: `/metrics`, `/healthz`, `/readyz`, the API.
    pub listen: SocketAddr,
    /// Drop-in job files, `*.toml`.
    pub jobs_dir: PathBuf,
    /// Durable state.
    pub state_dir: PathBuf,
    /// Engine plugins (`*.so`).
    pub plugin_dir: PathBuf,
    /// Copy lanes shared by all concurrent imports (the global worker budget).
    pub workers: u32,
    /// TLS on the listener: the certificate chain (PEM), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// TLS on the listener: the private key (PEM), readable by its owner only.
    pub tls_key: Option<PathBuf>,
}

/// Instance categories (rule 3 accepts the dedicated ones only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Dedicated CPU instance.
    Dedicated,
    /// Instance on a dedicated host.
    DedicatedHost,
    /// General purpose (shared CPU).
    General,
    /// Shared instance.
    Shared,
}

impl Category {
    const NAMES: [&'static str; 4] = ["dedicated", "dedicated-host", "general", "shared"];

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "dedicated" => Category::Dedicated,
            "dedicated-host" => Category::DedicatedHost,
            "general" => Category::General,
            "shared" => Category::Shared,
            _ => return None,
        })
    }

    /// Whether imports may use an instance of this category.
    pub fn is_dedicated(self) -> bool {
        matches!(self, Category::Dedicated | Category::DedicatedHost)
    }

    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Lock modes an operator may set; anything but `Unlock` is a lock (rule 8).
pub const LOCK_MODES: [&str; 5] = [
    "Unlock",
    "ManualLock",
    "LockByExpiration",
    "LockByRestoration",
    "LockByDiskQuota",
];

/// The words `tls` takes, following the stock clients' `--ssl-mode`.
pub const TLS_MODES: [&str; 5] = ["off", "preferred", "trust", "verify-ca", "on"];

/// Engines an instance may run (rule 3).
pub const ENGINES: [&str; 2] = ["mysql", "sqlserver"];

/// One database instance dbferry may import from or into.
#[derive(Clone, Debug)]
pub struct Instance {
    /// The instance id, as in the API.
    pub id: String,
    /// `mysql` or `sqlserver`: names the plugin.
    pub engine: String,
    /// The owning account.
    pub owner: String,
    /// The category.
    pub category: Category,
    /// Provisioned storage, GB (2^30 bytes).
    pub storage_gb: f64,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User.
    pub user: String,
    /// Where the password comes from.
    pub password: Secret,
    /// Operator-set lock mode; `None` means `Unlock`.
    pub lock_mode: Option<String>,
    /// SQL Server edition, when the server cannot tell.
    pub edition: Option<String>,
    /// Transport encryption, as the stock clients' `--ssl-mode`: `off`,
    /// `preferred`, `trust` (encrypted, any certificate), `verify-ca`
    /// (chain checked) or `on` (chain and host name checked). `None` leaves
    /// the engine's default (`preferred` for MySQL).
    pub tls: Option<String>,
    /// Trusted CA certificates (PEM) for `verify-ca` and `on`; the system's
    /// roots when absent.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM), with `tls_key`, for servers that ask.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM), readable by its owner only.
    pub tls_key: Option<PathBuf>,
    /// Directory, reachable by this server, for backup-and-restore imports.
    pub backup_path: Option<String>,
    /// A Babelfish instance's PostgreSQL port (SQL Server engine only):
    /// data is loaded into it through that port with `COPY`.
    pub postgres_port: Option<u16>,
}

impl Instance {
    /// Provisioned storage in bytes.
    pub fn storage_bytes(&self) -> u64 {
        (self.storage_gb * (1u64 << 30) as f64) as u64
    }

    /// Whether an operator lock is set.
    pub fn is_locked(&self) -> bool {
        self.lock_mode.as_deref().is_some_and(|m| m != "Unlock")
    }
}

/// An API caller.
#[derive(Clone, Debug)]
pub struct AccessKey {
    /// The AccessKeyId.
    pub id: String,
    /// The secret.
    pub secret: Secret,
    /// The account it acts for.
    pub owner: String,
}

impl Config {
    /// Reads and validates a config file, reporting every problem at once.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let source = Source::new(path, String::new());
            Diagnostics(vec![source.diag(
                None,
                ErrorCode::InvalidParameter,
                format!("cannot read config: {e}"),
            )])
        })?;
        Self::parse(&Source::new(path, text))
    }

    /// Validates config text.
    pub fn parse(source: &Source) -> Result<Self, Diagnostics> {
        let doc = parse(source).map_err(|d| Diagnostics(vec![d]))?;
        let mut diags = Vec::new();
        let mut root = Fields::new(source, doc.as_table(), None, "", &mut diags);
        let daemon_table = root.table("daemon");
        let instance_tables = root.tables("instances");
        let key_tables = root.tables("access_keys");
        root.finish();

        let daemon = daemon_settings(source, daemon_table, &mut diags);
        let mut instances = Vec::new();
        for (n, (table, span)) in instance_tables.into_iter().enumerate() {
            if let Some(instance) = instance(source, table, span, n + 1, &mut diags) {
                instances.push(instance);
            }
        }
        let mut access_keys = Vec::new();
        for (n, (table, span)) in key_tables.into_iter().enumerate() {
            if let Some(key) = access_key(source, table, span, n + 1, &mut diags) {
                access_keys.push(key);
            }
        }
        check_unique(source, &doc, "instances", &mut diags);
        check_unique(source, &doc, "access_keys", &mut diags);
        if !diags.is_empty() {
            return Err(Diagnostics(diags));
        }
        Ok(Config {
            path: source.file.clone(),
            daemon,
            instances,
            access_keys,
        })
    }

    /// The instance with this id.
    pub fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.id == id)
    }
}

fn default_plugin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/dbferry/plugins"))
}

fn daemon_settings(
    source: &Source,
    table: Option<(&toml_edit::Table, Option<std::ops::Range<usize>>)>,
    diags: &mut Vec<Diagnostic>,
) -> DaemonSettings {
    let mut settings = DaemonSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 9650)),
        jobs_dir: PathBuf::from("/etc/dbferry/jobs.d"),
        state_dir: PathBuf::from("/var/lib/dbferry"),
        plugin_dir: default_plugin_dir(),
        workers: 8,
        tls_cert: None,
        tls_key: None,
    };
    let Some((table, span)) = table else {
        return settings;
    };
    let mut f = Fields::new(source, table, span, "[daemon]", diags);
    if let Some(listen) = f.non_empty("listen", false) {
        match listen.value.parse() {
            Ok(addr) => settings.listen = addr,
            Err(_) => f.error(
                listen.span,
                ErrorCode::InvalidParameter,
                format!(
                    "`listen` must be an address like \"127.0.0.1:9650\", found \"{}\"",
                    listen.value
                ),
            ),
        }
    }
    let relative = |p: String| source.file.parent().unwrap_or(Path::new(".")).join(p);
    if let Some(dir) = f.non_empty("jobs_dir", false) {
        settings.jobs_dir = relative(dir.value);
    }
    if let Some(dir) = f.non_empty("state_dir", false) {
        settings.state_dir = relative(dir.value);
    }
    if let Some(dir) = f.non_empty("plugin_dir", false) {
        settings.plugin_dir = relative(dir.value);
    }
    if let Some(n) = f.integer("workers", false, 1..1025) {
        settings.workers = n.value as u32;
    }
    let cert = f.non_empty("tls_cert", false);
    let key = f.non_empty("tls_key", false);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let cert_path = relative(cert.value);
            let key_path = relative(key.value);
            if let Err(e) = std::fs::File::open(&cert_path) {
                f.error(
                    cert.span,
                    ErrorCode::InvalidParameter,
                    format!("cannot read tls_cert {}: {e}", cert_path.display()),
                );
            }
            if let Err(message) = Secret::File(key_path.clone()).read() {
                f.error(key.span, ErrorCode::InvalidParameter, message);
            }
            settings.tls_cert = Some(cert_path);
            settings.tls_key = Some(key_path);
        }
        (Some(only), None) | (None, Some(only)) => f.error(
            only.span,
            ErrorCode::MissingParameter,
            "set both `tls_cert` and `tls_key` in [daemon] (or neither, for plain HTTP)",
        ),
        (None, None) => {}
    }
    f.finish();
    settings
}

fn instance(
    source: &Source,
    table: &toml_edit::Table,
    span: Option<std::ops::Range<usize>>,
    n: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<Instance> {
    let mut f = Fields::new(source, table, span.clone(), format!("[[instances]] #{n}"), diags);
    let id = f.non_empty("id", true);
    let engine = f.choice("engine", true, &ENGINES);
    let owner = f.non_empty("owner", true);
    let category = f.choice("category", true, &Category::NAMES);
    let storage_gb = f.positive_number("storage_gb", true);
    let host = f.non_empty("host", true);
    let port = f.integer("port", true, 1..65536);
    let user = f.non_empty("user", true);
    let password = secret::read_choice(&mut f, ("password_file", "password_env"), span, true);
    f.forbid(
        "password",
        "inline passwords are refused; use `password_file` or `password_env`",
    );
    let lock_mode = f.choice("lock_mode", false, &LOCK_MODES);
    let edition = f.non_empty("edition", false);
    let tls = f.choice("tls", false, &TLS_MODES);
    let (tls_ca, tls_cert, tls_key) = tls_files(&mut f);
    let backup_path = f.non_empty("backup_path", false);
    let postgres_port = f.integer("postgres_port", false, 1..65536);
    if let (Some(port), Some(engine)) = (&postgres_port, &engine) {
        if engine.value != "sqlserver" {
            f.error(
                port.span.clone(),
                ErrorCode::InvalidParameter,
                "`postgres_port` is for `engine = \"sqlserver\"` instances served by Babelfish for PostgreSQL",
            );
        }
    }
    f.finish();
    Some(Instance {
        id: id?.value,
        engine: engine?.value,
        owner: owner?.value,
        category: Category::parse(&category?.value)?,
        storage_gb: storage_gb?.value,
        host: host?.value,
        port: u16::try_from(port?.value).ok()?,
        user: user?.value,
        password: password?,
        lock_mode: lock_mode.map(|m| m.value),
        edition: edition.map(|e| e.value),
        tls: tls.map(|t| t.value),
        tls_ca,
        tls_cert,
        tls_key,
        backup_path: backup_path.map(|p| p.value),
        postgres_port: postgres_port.and_then(|p| u16::try_from(p.value).ok()),
    })
}

/// `tls_ca`, `tls_cert` and `tls_key` of an instance: readable files, the
/// key private to its owner, cert and key together.
fn tls_files(f: &mut Fields<'_, '_>) -> (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
    let base = f.base_dir();
    let readable = |f: &mut Fields<'_, '_>, key: &'static str| {
        let value = f.non_empty(key, false)?;
        let path = base.join(&value.value);
        if let Err(e) = std::fs::File::open(&path) {
            f.error(
                value.span.clone(),
                ErrorCode::InvalidParameter,
                format!("cannot read {key} {}: {e}", path.display()),
            );
        }
        Some((path, value.span))
    };
    let ca = readable(f, "tls_ca").map(|(p, _)| p);
    let cert = readable(f, "tls_cert");
    let key = f.non_empty("tls_key", false).map(|k| (base.join(&k.value), k.span));
    match (cert, key) {
        (Some((cert, _)), Some((key, span))) => {
            if let Err(message) = Secret::File(key.clone()).read() {
                f.error(span, ErrorCode::InvalidParameter, message);
            }
            (ca, Some(cert), Some(key))
        }
        (Some((_, span)), None) | (None, Some((_, span))) => {
            f.error(
                span,
                ErrorCode::MissingParameter,
                "set both `tls_cert` and `tls_key` on an instance (or neither)",
            );
            (ca, None, None)
        }
        (None, None) => (ca, None, None),
    }
}

fn access_key(
    source: &Source,
    table: &toml_edit::Table,
    span: Option<std::ops::Range<usize>>,
    n: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<AccessKey> {
    let mut f = Fields::new(source, table, span.clone(), format!("[[access_keys]] #{n}"), diags);
    let id = f.non_empty("id", true);
    let secret = secret::read_choice(&mut f, ("secret_file", "secret_env"), span, true);
    f.forbid("secret", "inline secrets are refused; use `secret_file`");
    let owner = f.non_empty("owner", true);
    f.finish();
    Some(AccessKey {
        id: id?.value,
        secret: secret?,
        owner: owner?.value,
    })
}

fn check_unique(source: &Source, doc: &toml_edit::ImDocument<String>, key: &str, diags: &mut Vec<Diagnostic>) {
    let Some(array) = doc.get(key).and_then(|i| i.as_array_of_tables()) else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for table in array.iter() {
        if let Some(item) = table.get("id") {
            if let Some(id) = item.as_str() {
                if !seen.insert(id.to_string()) {
                    diags.push(source.diag(
                        item.span(),
                        ErrorCode::InvalidParameter,
                        format!("duplicate id \"{id}\" in [[{key}]]"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, dir: &Path) -> Result<Config, Vec<String>> {
        Config::parse(&Source::new(&dir.join("dbferry.toml"), text.into())).map_err(|d| {
            d.0.iter()
                .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
                .collect()
        })
    }

    fn secret(dir: &Path, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("secret-{mode:o}"));
        std::fs::write(&path, "pw\n").expect("write secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn instance(password_line: &str) -> String {
        format!(
            "[[instances]]\nid = \"rm-1\"\nengine = \"mysql\"\nowner = \"1\"\ncategory = \"dedicated\"\nstorage_gb = 0.5\nhost = \"127.0.0.1\"\nport = 3306\nuser = \"u\"\n{password_line}\n"
        )
    }

    #[test]
    fn a_valid_config_loads_and_reads_its_private_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = secret(dir.path(), 0o600);
        let text = format!(
            "[daemon]\nlisten = \"127.0.0.1:9999\"\n{}",
            instance(&format!("password_file = \"{}\"", file.display()))
        );
        let config = load(&text, dir.path()).expect("valid");
        assert_eq!(config.daemon.listen.port(), 9999);
        let rm1 = config.instance("rm-1").expect("instance");
        assert_eq!(rm1.password.read().as_deref(), Ok("pw"));
        assert_eq!(rm1.storage_bytes(), 1 << 29);
        assert!(!format!("{rm1:?}").contains("pw\""), "Debug must not show the secret");
    }

    #[test]
    fn exposed_secrets_inline_passwords_and_unknown_keys_are_all_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exposed = secret(dir.path(), 0o640);
        let text = format!(
            "colour = 1\n{}password = \"hunter2\"\nport2 = 1\n",
            instance(&format!("password_file = \"{}\"", exposed.display()))
        );
        let errors = load(&text, dir.path()).expect_err("invalid");
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("1:1: unknown key `colour`"), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.contains("accessible by group or others")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`password` in [[instances]] #1 is not allowed")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("unknown key `port2`")), "{errors:?}");
    }

    #[test]
    fn postgres_port_is_for_sqlserver_instances_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = secret(dir.path(), 0o600);
        let mysql = instance(&format!("password_file = \"{}\"", pw.display()));
        let bad = format!("{mysql}postgres_port = 5432\n");
        let errors = load(&bad, dir.path()).expect_err("invalid");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("`postgres_port` is for `engine = \"sqlserver\"`"),
            "{errors:?}"
        );
        let out_of_range = format!("{}postgres_port = 70000\n", mysql.replace("\"mysql\"", "\"sqlserver\""));
        assert!(load(&out_of_range, dir.path()).is_err());
        let ok = format!("{}postgres_port = 5432\n", mysql.replace("\"mysql\"", "\"sqlserver\""));
        let config = load(&ok, dir.path()).expect("valid");
        assert_eq!(config.instance("rm-1").and_then(|i| i.postgres_port), Some(5432));
    }

    #[test]
    fn tls_modes_and_files_are_validated_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = secret(dir.path(), 0o600);
        let exposed_key = secret(dir.path(), 0o644);
        let ok = format!(
            "{}tls = \"verify-ca\"\ntls_ca = \"{}\"\n",
            instance(&format!("password_file = \"{}\"", pw.display())),
            pw.display()
        );
        let config = load(&ok, dir.path()).expect("valid");
        let rm1 = config.instance("rm-1").expect("instance");
        assert_eq!(rm1.tls.as_deref(), Some("verify-ca"));
        assert_eq!(rm1.tls_ca.as_deref(), Some(pw.as_path()));
        let bad = format!(
            "{}tls = \"required\"\ntls_ca = \"/nonexistent/ca.pem\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            instance(&format!("password_file = \"{}\"", pw.display())),
            pw.display(),
            exposed_key.display()
        );
        let errors = load(&bad, dir.path()).expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains(
                "`tls` in [[instances]] #1 must be one of \"off\", \"preferred\", \"trust\", \"verify-ca\", \"on\""
            ),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("cannot read tls_ca /nonexistent/ca.pem")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("accessible by group or others")),
            "{errors:?}"
        );
        let half = format!(
            "{}tls_key = \"{}\"\n",
            instance(&format!("password_file = \"{}\"", pw.display())),
            pw.display()
        );
        let errors = load(&half, dir.path()).expect_err("invalid");
        assert!(errors[0].contains("set both `tls_cert` and `tls_key`"), "{errors:?}");
    }
}
