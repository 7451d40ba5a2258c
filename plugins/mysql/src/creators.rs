//! What a target account may not create although it holds the privileges:
//! with the binary log on, creating a trigger or a stored function needs
//! SUPER unless `log_bin_trust_function_creators` is ON (error 1419).
//! Cloud instances turn that setting on; MySQL ships with it off.

use dbferry_plugin_abi::protocol::{DatabaseSchema, ObjectKind};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::conn::cell;
use crate::error::{Context, Result};

/// The account's `'user'@'host'` as information_schema's GRANTEE spells it
/// (an account with SELECT on `mysql` sees every account's rows).
const GRANTEE: &str = "(SELECT CONCAT('''', LEFT(me, CHAR_LENGTH(me) - CHAR_LENGTH(host) - 1), '''@''', host, '''') \
     FROM (SELECT CURRENT_USER() AS me, SUBSTRING_INDEX(CURRENT_USER(), '@', -1) AS host) AS who)";

/// The triggers and functions of `schema` this account cannot create on
/// the server of `conn`, each with the reason; empty when it can.
pub async fn refused(conn: &mut Conn, schema: &DatabaseSchema) -> Result<Vec<String>> {
    let wanted: Vec<_> = schema
        .objects
        .iter()
        .filter(|o| matches!(o.kind, ObjectKind::Trigger | ObjectKind::Function))
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT @@log_bin AND NOT @@log_bin_trust_function_creators, \
         (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES \
          WHERE PRIVILEGE_TYPE = 'SUPER' AND GRANTEE = {GRANTEE})"
    );
    let row: Option<Row> = conn.query_first(sql.as_str()).await.ctx(|| format!("running {sql}"))?;
    let (restricted, has_super) = row.map_or((false, false), |r| (cell::u64(&r, 0) != 0, cell::u64(&r, 1) > 0));
    if !restricted || has_super {
        return Ok(Vec::new());
    }
    Ok(wanted
        .into_iter()
        .map(|o| {
            format!(
                "{} {}: the binary log is on, log_bin_trust_function_creators is OFF and the account lacks SUPER, \
                 so the server refuses to create it (error 1419); set log_bin_trust_function_creators = ON \
                 on the target (as cloud instances do), or grant the account SUPER",
                format!("{:?}", o.kind).to_lowercase(),
                o.name
            )
        })
        .collect())
}
