//! Commands that call the API directly: `me`, `models`, `repos`, `agents ...`.

use std::fmt::Write as _;

use clap::Subcommand;
use serde::Serialize;

use super::{Exit, Output};
use crate::cursor::model::{Agent, AgentId};
use crate::cursor::{ApiError, Client, ClientConfig, ConfigError, MAX_PAGE};

/// `orchestrate agents ...`.
#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// List agents, newest first.
    List {
        /// Agents per page (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Start after this page cursor (printed by the previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow every page.
        #[arg(long, conflicts_with = "cursor")]
        all: bool,
    },
    /// Show one agent.
    Get {
        /// Agent id (`bc_...`).
        id: String,
    },
    /// Show an agent's conversation.
    Conversation {
        /// Agent id.
        id: String,
    },
    /// Stop a running agent.
    Stop {
        /// Agent id.
        id: String,
    },
    /// Delete an agent for good.
    Delete {
        /// Agent id.
        id: String,
    },
}

/// Which API command to run.
#[derive(Debug)]
pub enum ApiCommand {
    /// `me`.
    Me,
    /// `models`.
    Models,
    /// `repos`.
    Repos,
    /// `agents ...`.
    Agents(AgentsCommand),
}

/// The client the environment describes, or the exit code after explaining what is missing.
pub fn client_from_env(out: &Output) -> Result<Client, Exit> {
    let config = ClientConfig::from_env().map_err(|error| {
        out.error(&error.to_string());
        if error == ConfigError::MissingKey {
            out.status(
                "hint: export CURSOR_API_KEY (from https://cursor.com/settings), or try the simulator:\n  \
                 orchestrate sim --addr 127.0.0.1:8787 &\n  \
                 CURSOR_API_BASE_URL=http://127.0.0.1:8787 CURSOR_API_KEY=sim-key orchestrate me",
            );
        }
        Exit::ApiUnusable
    })?;
    Client::new(config).map_err(|error| {
        out.error(&error.to_string());
        Exit::ApiUnusable
    })
}

/// A client of the API a run's agents live in: the Cursor API, or its Agent Platform.
pub fn client_for(out: &Output, api: &crate::spec::Api) -> Result<Client, Exit> {
    let crate::spec::Api::Platform(platform) = api else {
        return client_from_env(out);
    };
    ClientConfig::platform_from_env(&platform.url)
        .and_then(Client::new)
        .map_err(|error| {
            out.error(&error.to_string());
            Exit::ApiUnusable
        })
}

/// The exit code for a failed call.
pub fn exit_for(error: &ApiError) -> Exit {
    match error {
        ApiError::NotFound { .. } | ApiError::BadRequest { .. } => Exit::Invalid,
        ApiError::Conflict { .. } => Exit::TaskFailed,
        _ => Exit::ApiUnusable,
    }
}

/// Runs an API command.
pub async fn run(out: &Output, command: ApiCommand, json: bool) -> Exit {
    let client = match client_from_env(out) {
        Ok(client) => client,
        Err(exit) => return exit,
    };
    match execute(out, &client, command, json).await {
        Ok(()) => Exit::Success,
        Err(error) => {
            out.error(&error.to_string());
            exit_for(&error)
        }
    }
}

fn print_json<T: Serialize>(out: &Output, value: &T) {
    out.stdout(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).expect("plain JSON")
    ));
}

async fn execute(
    out: &Output,
    client: &Client,
    command: ApiCommand,
    json: bool,
) -> Result<(), ApiError> {
    match command {
        ApiCommand::Me => {
            let me = client.me().await?;
            if json {
                print_json(out, &me);
            } else {
                out.stdout(&format!(
                    "key:     {}\nuser:    {}\ncreated: {}\n",
                    me.api_key_name,
                    me.user_email.as_deref().unwrap_or("-"),
                    me.created_at.as_deref().unwrap_or("-")
                ));
            }
        }
        ApiCommand::Models => {
            let models = client.models().await?;
            if json {
                print_json(out, &models);
            } else {
                out.stdout(
                    &models
                        .models
                        .iter()
                        .map(|m| format!("{m}\n"))
                        .collect::<Vec<_>>()
                        .concat(),
                );
            }
        }
        ApiCommand::Repos => {
            if client.quotas().next_repositories_call().is_some() {
                out.status(
                    "waiting for the repositories quota (1 call per minute, 30 per hour)...",
                );
            }
            let repositories = client.repositories().await?;
            if json {
                print_json(out, &repositories);
            } else {
                let lines = repositories
                    .repositories
                    .iter()
                    .map(|r| format!("{}/{}\t{}\n", r.owner, r.name, r.repository))
                    .collect::<Vec<_>>()
                    .concat();
                out.stdout(&lines);
            }
        }
        ApiCommand::Agents(command) => agents(out, client, command, json).await?,
    }
    Ok(())
}

async fn agents(
    out: &Output,
    client: &Client,
    command: AgentsCommand,
    json: bool,
) -> Result<(), ApiError> {
    match command {
        AgentsCommand::List { limit, cursor, all } => {
            let mut agents = Vec::new();
            let mut cursor = cursor;
            loop {
                let page = client
                    .list_agents(Some(limit.min(MAX_PAGE)), cursor.as_deref())
                    .await?;
                agents.extend(page.agents);
                cursor = page.next_cursor;
                if !all || cursor.is_none() {
                    break;
                }
            }
            if json {
                print_json(
                    out,
                    &serde_json::json!({ "agents": agents, "nextCursor": cursor }),
                );
            } else {
                out.stdout(&agent_table(&agents));
                if let Some(cursor) = cursor {
                    out.status(&format!("more: orchestrate agents list --cursor {cursor}"));
                }
            }
        }
        AgentsCommand::Get { id } => {
            let agent = client.agent(&AgentId(id)).await?;
            if json {
                print_json(out, &agent);
            } else {
                out.stdout(&agent_details(&agent));
            }
        }
        AgentsCommand::Conversation { id } => {
            let conversation = client.conversation(&AgentId(id)).await?;
            if json {
                print_json(out, &conversation);
            } else {
                let text = conversation
                    .messages
                    .iter()
                    .map(|m| {
                        let who = if m.kind == "user_message" {
                            "you"
                        } else {
                            "agent"
                        };
                        format!("[{who}] {}\n\n", m.text.trim_end())
                    })
                    .collect::<Vec<_>>()
                    .concat();
                out.stdout(&text);
            }
        }
        AgentsCommand::Stop { id } => {
            let stopped = client.stop(&AgentId(id)).await?;
            if json {
                print_json(out, &stopped);
            } else {
                out.stdout(&format!("stopped {}\n", stopped.id));
            }
        }
        AgentsCommand::Delete { id } => {
            let deleted = client.delete(&AgentId(id)).await?;
            if json {
                print_json(out, &deleted);
            } else {
                out.stdout(&format!("deleted {}\n", deleted.id));
            }
        }
    }
    Ok(())
}

fn agent_table(agents: &[Agent]) -> String {
    let mut table = String::from("ID\tSTATUS\tREPOSITORY\tBRANCH\tPR\tCREATED\n");
    for agent in agents {
        let repo = agent
            .repository()
            .unwrap_or("-")
            .trim_start_matches("https://github.com/");
        let _ = writeln!(
            table,
            "{}\t{}\t{repo}\t{}\t{}\t{}",
            agent.id,
            agent.status,
            agent.branch().unwrap_or("-"),
            agent.pr_url().unwrap_or("-"),
            agent.created_at.as_deref().unwrap_or("-"),
        );
    }
    table
}

fn agent_details(agent: &Agent) -> String {
    let field = |name: &str, value: Option<&str>| format!("{name:<9} {}\n", value.unwrap_or("-"));
    [
        field("id:", Some(agent.id.0.as_str())),
        field("status:", Some(agent.status.as_str())),
        field("name:", agent.name.as_deref()),
        field("repo:", agent.repository()),
        field(
            "ref:",
            agent.source.as_ref().and_then(|s| s.git_ref.as_deref()),
        ),
        field("branch:", agent.branch()),
        field("pr:", agent.pr_url()),
        field("url:", agent.target.as_ref().and_then(|t| t.url.as_deref())),
        field("created:", agent.created_at.as_deref()),
        field("summary:", agent.summary.as_deref()),
    ]
    .concat()
}
