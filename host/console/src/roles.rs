//! Who may do what: three roles, and the permissions each grants, checked
//! in one place ([`Role::grants`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A role, from the local accounts file or the OpenID provider's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Sees the status and the runs, downloads logs.
    Viewer,
    /// Everything a viewer does, and creates, changes, runs, pauses and
    /// redelivers connectors and changes mappings.
    ConnectorAdmin,
    /// Sees the audit trail, the reconciliation, the quarantine and logs.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::ConnectorAdmin, Role::Auditor];

    /// `viewer`, `connector-admin` or `auditor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::ConnectorAdmin => "connector-admin",
            Role::Auditor => "auditor",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether this role allows `permission`.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Viewer => matches!(permission, ViewStatus | DownloadLogs),
            Role::ConnectorAdmin => matches!(
                permission,
                ViewStatus | DownloadLogs | ViewQuarantine | ViewReconciliation | ChangeConnectors
            ),
            Role::Auditor => matches!(
                permission,
                ViewStatus | DownloadLogs | ViewQuarantine | ViewReconciliation | ViewAuditTrail
            ),
        }
    }
}

/// Something a page shows or an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// The connectors, their state and runs.
    ViewStatus,
    /// A run's admin log (CSV).
    DownloadLogs,
    /// The quarantined items.
    ViewQuarantine,
    /// The reconciliation of each mailbox and day.
    ViewReconciliation,
    /// The audit trail of admin actions.
    ViewAuditTrail,
    /// Create, change, run, pause, resume, redeliver, change mappings.
    ChangeConnectors,
}

impl Permission {
    /// What the permission lets one do, for refusals.
    pub fn describe(self) -> &'static str {
        match self {
            Permission::ViewStatus => "see the connectors",
            Permission::DownloadLogs => "download logs",
            Permission::ViewQuarantine => "see the quarantine",
            Permission::ViewReconciliation => "see the reconciliation",
            Permission::ViewAuditTrail => "see the audit trail",
            Permission::ChangeConnectors => "change connectors",
        }
    }

    /// The roles that grant it.
    pub fn roles(self) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| r.grants(self)).collect()
    }
}

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account name, or the provider's e-mail (else its subject).
    pub name: String,
    /// The roles the account or the provider's groups grant.
    pub roles: BTreeSet<Role>,
    /// `local` or the OpenID issuer.
    pub via: String,
}

impl Identity {
    /// Whether any of the roles allows `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.roles.iter().any(|r| r.grants(permission))
    }

    /// The roles, comma-separated.
    pub fn role_names(&self) -> String {
        self.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connector_admins_change_connectors() {
        assert_eq!(
            Permission::ChangeConnectors.roles(),
            vec![Role::ConnectorAdmin]
        );
    }

    #[test]
    fn only_auditors_see_the_audit_trail() {
        assert_eq!(Permission::ViewAuditTrail.roles(), vec![Role::Auditor]);
    }

    #[test]
    fn every_role_sees_the_status_and_downloads_logs() {
        assert_eq!(Permission::ViewStatus.roles(), Role::ALL.to_vec());
        assert_eq!(Permission::DownloadLogs.roles(), Role::ALL.to_vec());
    }
}
