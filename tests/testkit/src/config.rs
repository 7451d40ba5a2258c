//! Writers for dbferry config (CONTRACT §2) and job files (CONTRACT §3).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::babelfish::{Babelfish, BABELFISH_PASSWORD, BABELFISH_USER};
use crate::error::Error;
use crate::server::{Server, ADMIN_USER};

/// The owner account the builders use unless told otherwise.
pub const DEFAULT_OWNER: &str = "1234567890";

/// A TOML basic string. JSON string escaping is a subset of TOML's.
fn toml_str(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}

/// A temporary directory for config, job, secret and state files.
#[derive(Debug)]
pub struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    /// A new, empty directory.
    ///
    /// # Panics
    /// If the temporary directory cannot be created.
    pub fn new() -> Self {
        match tempfile::Builder::new().prefix("dbferry-files-").tempdir() {
            Ok(dir) => Self { dir },
            Err(e) => panic!("dbferry-testkit: creating a temporary directory: {e}"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `name` (relative; parents are created) with
    /// mode 0644 and returns its path.
    pub fn try_write(&self, name: &str, contents: &str) -> Result<PathBuf, Error> {
        self.write_mode(name, contents, 0o644)
    }

    /// Writes `contents` to `name` and returns its path.
    ///
    /// # Panics
    /// On an I/O error.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        match self.try_write(name, contents) {
            Ok(path) => path,
            Err(e) => panic!("{e}"),
        }
    }

    /// Writes `contents` to `name` with `mode` (e.g. 0o600 for a secret).
    pub fn write_mode(&self, name: &str, contents: &str, mode: u32) -> Result<PathBuf, Error> {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        fs::write(&path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("chmod {}", path.display()), e))?;
        Ok(path)
    }

    /// Creates (if needed) and returns the subdirectory `name`.
    ///
    /// # Panics
    /// On an I/O error.
    pub fn dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Err(e) = fs::create_dir_all(&path) {
            panic!("creating {}: {e}", path.display());
        }
        path
    }
}

impl Default for Files {
    fn default() -> Self {
        Self::new()
    }
}

/// One `[[instances]]` entry.
#[derive(Clone, Debug)]
pub struct Instance {
    /// `id`.
    pub id: String,
    /// `engine`.
    pub engine: String,
    /// `owner`.
    pub owner: String,
    /// `category`.
    pub category: String,
    /// `storage_gb`, written as an integer when it is whole.
    pub storage_gb: f64,
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `user`.
    pub user: String,
    /// The password, written to a 0600 file named by `password_file`.
    pub password: String,
    /// `lock_mode`, when set.
    pub lock_mode: Option<String>,
    /// `edition`, when set.
    pub edition: Option<String>,
    /// Extra `key = <raw TOML value>` lines, verbatim.
    pub extra: Vec<(String, String)>,
}

impl Instance {
    /// A dedicated MySQL-engine instance `id` for `server`, owned by
    /// [`DEFAULT_OWNER`], logging in as [`ADMIN_USER`], 100 GB of storage.
    pub fn mysql(id: &str, server: &Server) -> Self {
        Self {
            id: id.to_string(),
            engine: "mysql".into(),
            owner: DEFAULT_OWNER.into(),
            category: "dedicated".into(),
            storage_gb: 100.0,
            host: server.host().to_string(),
            port: server.port(),
            user: ADMIN_USER.into(),
            password: server.admin_password().to_string(),
            lock_mode: None,
            edition: None,
            extra: Vec::new(),
        }
    }

    /// A dedicated SQL Server-engine instance `id` for the Babelfish
    /// `server` (its TDS port), owned by [`DEFAULT_OWNER`], logging in as
    /// [`BABELFISH_USER`] with `tls = "trust"` (the server's certificate is
    /// self-signed), loading through its PostgreSQL port (`postgres_port`),
    /// 100 GB of storage.
    pub fn babelfish(id: &str, server: &Babelfish) -> Self {
        Self {
            id: id.to_string(),
            engine: "sqlserver".into(),
            owner: DEFAULT_OWNER.into(),
            category: "dedicated".into(),
            storage_gb: 100.0,
            host: server.host().to_string(),
            port: server.tds_port(),
            user: BABELFISH_USER.into(),
            password: BABELFISH_PASSWORD.into(),
            lock_mode: None,
            edition: None,
            extra: vec![
                ("tls".into(), "\"trust\"".into()),
                ("postgres_port".into(), server.pg_port().to_string()),
            ],
        }
    }

    /// Sets `edition`.
    pub fn edition(mut self, edition: &str) -> Self {
        self.edition = Some(edition.into());
        self
    }

    /// Sets `owner`.
    pub fn owner(mut self, owner: &str) -> Self {
        self.owner = owner.into();
        self
    }

    /// Sets `category`.
    pub fn category(mut self, category: &str) -> Self {
        self.category = category.into();
        self
    }

    /// Sets `engine`.
    pub fn engine(mut self, engine: &str) -> Self {
        self.engine = engine.into();
        self
    }

    /// Sets `storage_gb`.
    pub fn storage_gb(mut self, gb: f64) -> Self {
        self.storage_gb = gb;
        self
    }

    /// Sets `port` (e.g. a closed one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the login.
    pub fn login(mut self, user: &str, password: &str) -> Self {
        self.user = user.into();
        self.password = password.into();
        self
    }

    /// Sets `lock_mode`.
    pub fn lock_mode(mut self, mode: &str) -> Self {
        self.lock_mode = Some(mode.into());
        self
    }

    /// Leaves out the `key` an earlier [`Instance::extra`] set.
    pub fn without(mut self, key: &str) -> Self {
        self.extra.retain(|(k, _)| k != key);
        self
    }

    /// Sets `key = raw` verbatim, in place of an earlier value of `key`.
    pub fn extra(mut self, key: &str, raw: &str) -> Self {
        self.extra.retain(|(k, _)| k != key);
        self.extra.push((key.into(), raw.into()));
        self
    }
}

/// One `[[access_keys]]` entry.
#[derive(Clone, Debug)]
pub struct AccessKey {
    /// `id`.
    pub id: String,
    /// The secret, written to a 0600 file named by `secret_file`.
    pub secret: String,
    /// `owner`.
    pub owner: String,
}

/// Builds a `dbferry.toml`.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    listen: Option<String>,
    plugin_dir: Option<PathBuf>,
    instances: Vec<Instance>,
    access_keys: Vec<AccessKey>,
}

impl ConfigBuilder {
    /// An empty config: `listen = "127.0.0.1:0"`, state and jobs under the
    /// [`Files`] directory, plugins next to the binary (the default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `plugin_dir`.
    pub fn plugin_dir(mut self, dir: &Path) -> Self {
        self.plugin_dir = Some(dir.to_path_buf());
        self
    }

    /// Sets `listen`.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Adds an instance.
    pub fn instance(mut self, instance: Instance) -> Self {
        self.instances.push(instance);
        self
    }

    /// Adds an access key.
    pub fn access_key(mut self, id: &str, secret: &str, owner: &str) -> Self {
        self.access_keys.push(AccessKey {
            id: id.into(),
            secret: secret.into(),
            owner: owner.into(),
        });
        self
    }

    /// The config text; writes the secret files (mode 0600) into `files`.
    pub fn try_render(&self, files: &Files) -> Result<String, Error> {
        let mut out = String::new();
        let listen = self.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into());
        let _ = writeln!(out, "[daemon]");
        let _ = writeln!(out, "listen = {}", toml_str(&listen));
        let _ = writeln!(
            out,
            "jobs_dir = {}",
            toml_str(&files.dir("jobs.d").display().to_string())
        );
        let _ = writeln!(
            out,
            "state_dir = {}",
            toml_str(&files.dir("state").display().to_string())
        );
        if let Some(dir) = &self.plugin_dir {
            let _ = writeln!(out, "plugin_dir = {}", toml_str(&dir.display().to_string()));
        }
        for instance in &self.instances {
            let secret = files.write_mode(&format!("secrets/{}", instance.id), &instance.password, 0o600)?;
            let _ = writeln!(out, "\n[[instances]]");
            let _ = writeln!(out, "id = {}", toml_str(&instance.id));
            let _ = writeln!(out, "engine = {}", toml_str(&instance.engine));
            let _ = writeln!(out, "owner = {}", toml_str(&instance.owner));
            let _ = writeln!(out, "category = {}", toml_str(&instance.category));
            if instance.storage_gb.fract() == 0.0 {
                let _ = writeln!(out, "storage_gb = {}", instance.storage_gb as i64);
            } else {
                let _ = writeln!(out, "storage_gb = {}", instance.storage_gb);
            }
            let _ = writeln!(out, "host = {}", toml_str(&instance.host));
            let _ = writeln!(out, "port = {}", instance.port);
            let _ = writeln!(out, "user = {}", toml_str(&instance.user));
            let _ = writeln!(out, "password_file = {}", toml_str(&secret.display().to_string()));
            if let Some(mode) = &instance.lock_mode {
                let _ = writeln!(out, "lock_mode = {}", toml_str(mode));
            }
            if let Some(edition) = &instance.edition {
                let _ = writeln!(out, "edition = {}", toml_str(edition));
            }
            for (key, raw) in &instance.extra {
                let _ = writeln!(out, "{key} = {raw}");
            }
        }
        for key in &self.access_keys {
            let secret = files.write_mode(&format!("secrets/{}", key.id), &key.secret, 0o600)?;
            let _ = writeln!(out, "\n[[access_keys]]");
            let _ = writeln!(out, "id = {}", toml_str(&key.id));
            let _ = writeln!(out, "secret_file = {}", toml_str(&secret.display().to_string()));
            let _ = writeln!(out, "owner = {}", toml_str(&key.owner));
        }
        Ok(out)
    }

    /// Writes `dbferry.toml` into `files` and returns its path.
    ///
    /// # Panics
    /// On an I/O error.
    pub fn write(&self, files: &Files) -> PathBuf {
        let written = self
            .try_render(files)
            .and_then(|text| files.try_write("dbferry.toml", &text));
        match written {
            Ok(path) => path,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Builds a job file.
#[derive(Clone, Debug)]
pub struct Job {
    /// `db_instance_id` (the target).
    pub target: String,
    /// `source_db_instance_id`.
    pub source: String,
    /// `owner`.
    pub owner: String,
    /// `db_info`, verbatim.
    pub db_info: String,
    /// `[options]` as `key = <raw TOML value>`.
    pub options: Vec<(String, String)>,
}

impl Job {
    /// A job copying `databases` (MySQL: `{"DBNames":[...]}`) from `source`
    /// to `target`, owned by [`DEFAULT_OWNER`].
    pub fn mysql(target: &str, source: &str, databases: &[&str]) -> Self {
        let db_info = serde_json::json!({ "DBNames": databases }).to_string();
        Self::raw(target, source, &db_info)
    }

    /// A SQL Server job copying each source database to its destination
    /// name (`{"DBNames":{"src":"dst"}}`) from `source` to `target`, owned
    /// by [`DEFAULT_OWNER`].
    pub fn sqlserver(target: &str, source: &str, databases: &[(&str, &str)]) -> Self {
        let names: serde_json::Map<String, serde_json::Value> = databases
            .iter()
            .map(|(from, to)| ((*from).to_string(), serde_json::Value::from(*to)))
            .collect();
        let db_info = serde_json::json!({ "DBNames": names }).to_string();
        Self::raw(target, source, &db_info)
    }

    /// A job with a verbatim `db_info` string.
    pub fn raw(target: &str, source: &str, db_info: &str) -> Self {
        Self {
            target: target.into(),
            source: source.into(),
            owner: DEFAULT_OWNER.into(),
            db_info: db_info.into(),
            options: Vec::new(),
        }
    }

    /// Sets `owner`.
    pub fn owner(mut self, owner: &str) -> Self {
        self.owner = owner.into();
        self
    }

    /// Adds `[options] key = raw` (a raw TOML value: `4`, `"checksum"`).
    pub fn option(mut self, key: &str, raw: &str) -> Self {
        self.options.push((key.into(), raw.into()));
        self
    }

    /// The job's TOML text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "db_instance_id = {}", toml_str(&self.target));
        let _ = writeln!(out, "source_db_instance_id = {}", toml_str(&self.source));
        let _ = writeln!(out, "owner = {}", toml_str(&self.owner));
        let _ = writeln!(out, "db_info = {}", toml_str(&self.db_info));
        if !self.options.is_empty() {
            let _ = writeln!(out, "\n[options]");
            for (key, raw) in &self.options {
                let _ = writeln!(out, "{key} = {raw}");
            }
        }
        out
    }

    /// Writes the job as `name` into `files` and returns its path.
    ///
    /// # Panics
    /// On an I/O error.
    pub fn write(&self, files: &Files, name: &str) -> PathBuf {
        files.write(name, &self.render())
    }
}
