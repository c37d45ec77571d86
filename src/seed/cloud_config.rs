//! The two small YAML files of a NoCloud seed that diskbridge writes itself: `meta-data` and the
//! `#cloud-config` carrying the login. Every value is a double-quoted scalar ([`quoted`]), so a host name, key
//! comment or hash can never end a value early or start a new key.

use super::yaml::quoted;

/// The login settings for the image's default user (the one its cloud.cfg names: debian, ubuntu, rocky…).
#[derive(Debug, Clone, Copy, Default)]
pub struct Login<'a> {
    /// The host name to set.
    pub hostname: Option<&'a str>,
    /// Public keys for the default user's `authorized_keys`, one line each.
    pub ssh_keys: &'a [String],
    /// The default user's password as a crypt hash.
    pub password_hash: Option<&'a str>,
}

/// `#cloud-config` for `login`. The top-level `password` (not `chpasswd.users`, which needs the user's name)
/// sets the default user's password on cloud-init 22.x and later alike; `expire: false` keeps the first login
/// from demanding a new one, and `ssh_pwauth` lets sshd take it.
pub fn cloud_config(login: &Login<'_>) -> String {
    let mut out = String::from("#cloud-config\n");
    if let Some(hostname) = login.hostname {
        out += &format!("hostname: {}\n", quoted(hostname));
    }
    if !login.ssh_keys.is_empty() {
        out += "ssh_authorized_keys:\n";
        for key in login.ssh_keys {
            out += &format!("  - {}\n", quoted(key));
        }
    }
    if let Some(hash) = login.password_hash {
        out += &format!("password: {}\nchpasswd:\n  expire: false\nssh_pwauth: true\n", quoted(hash));
    }
    out
}

/// NoCloud's `meta-data`: the instance id (a new one makes cloud-init run its first-boot modules again) and,
/// when given, the host name.
pub fn meta_data(instance_id: &str, hostname: Option<&str>) -> String {
    let mut out = format!("instance-id: {}\n", quoted(instance_id));
    if let Some(hostname) = hostname {
        out += &format!("local-hostname: {}\n", quoted(hostname));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::yaml::{Top, top_of};

    #[test]
    fn writes_each_setting_once_and_only_when_given() {
        let keys = vec!["ssh-ed25519 AAAA a@b".to_string(), "ssh-rsa BBBB".to_string()];
        let login = Login { hostname: Some("web"), ssh_keys: &keys, password_hash: Some("$6$s$h") };
        assert_eq!(
            cloud_config(&login),
            "#cloud-config\nhostname: \"web\"\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA a@b\"\n  - \"ssh-rsa BBBB\"\n\
             password: \"$6$s$h\"\nchpasswd:\n  expire: false\nssh_pwauth: true\n"
        );
        let keys_only = cloud_config(&Login { ssh_keys: &keys, ..Login::default() });
        assert!(!keys_only.contains("password") && !keys_only.contains("hostname"));
        assert_eq!(meta_data("iid-1", None), "instance-id: \"iid-1\"\n");
        assert_eq!(meta_data("iid-1", Some("web")), "instance-id: \"iid-1\"\nlocal-hostname: \"web\"\n");
    }

    #[test]
    fn hostile_values_stay_values() {
        let keys = vec!["ssh-ed25519 AAAA x\"\nruncmd: [reboot] #".to_string()];
        let login = Login { hostname: Some("a: b"), ssh_keys: &keys, password_hash: Some("$6$\"'\n- ") };
        let config = cloud_config(&login);
        let keys = ["hostname", "ssh_authorized_keys", "password", "chpasswd", "ssh_pwauth"];
        assert_eq!(top_of(&config).unwrap(), Top::Mapping(keys.map(String::from).to_vec()));
    }
}
