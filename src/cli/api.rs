//! Commands that call the API directly: `me`, `models`, `repos`, `agents ...`.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{Error, Exit, Listing, Output};
use crate::cursor::model::v1::{self, AgentRunId};
use crate::cursor::model::{Agent, AgentId};
use crate::cursor::{ApiError, Client, ClientConfig, ConfigError, MAX_PAGE};
use crate::report::{Table, Terminal, short_id};
use crate::spec::ApiVersion;

/// What every API command takes: the output form and the API version.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Output format (`json`: the API's JSON).
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    output: Listing,
    /// `-o json`, by its older name.
    #[arg(long, global = true, hide = true)]
    json: bool,
    /// The API version to call: v1 (default) or v0.
    #[arg(long, global = true, value_name = "VERSION", env = crate::spec::API_VERSION_VAR, value_parser = str::parse::<ApiVersion>)]
    api: Option<ApiVersion>,
}

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
    /// Show one agent (and, on v1, its latest run).
    Get {
        /// Agent id (`bc-<uuid>` on v1, `bc_...` on v0).
        id: String,
    },
    /// Show an agent's conversation (on v1: its runs, each with its result).
    Conversation {
        /// Agent id.
        id: String,
    },
    /// Stop a running agent (on v1: cancel its active run).
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

/// The client the environment describes, or what is missing with how to set it.
pub fn client_from_env() -> Result<Client, Error> {
    let config = ClientConfig::from_env().map_err(|error| {
        let missing = error == ConfigError::MissingKey;
        let error = Error::Config(error);
        if missing {
            return error.hinted(
                "hint: export CURSOR_API_KEY (from https://cursor.com/settings), or try the simulator:\n  \
                 orchestrate sim --addr 127.0.0.1:8787 &\n  \
                 CURSOR_API_BASE_URL=http://127.0.0.1:8787 CURSOR_API_KEY=sim-key orchestrate me",
            );
        }
        error
    })?;
    Ok(Client::new(config)?)
}

/// A client of the API a run's agents live in: the Cursor API, or its Agent Platform.
pub fn client_for(api: &crate::spec::Api) -> Result<Client, Error> {
    let crate::spec::Api::Platform(platform) = api else {
        return client_from_env();
    };
    Ok(ClientConfig::platform_from_env(&platform.url).and_then(Client::new)?)
}

/// Runs an API command on the version `--api`, else `CURSOR_API_VERSION`, else v1 chooses.
pub async fn run(out: &Output, command: ApiCommand, args: ApiArgs) -> Result<Exit, Error> {
    let version = args.api.unwrap_or_default();
    let client = client_from_env()?;
    let json = args.json || args.output == Listing::Json;
    if matches!(command, ApiCommand::Repos) && client.quotas().next_repositories_call().is_some() {
        out.status("waiting for the repositories quota (1 call per minute, 30 per hour)...");
    }
    match version {
        ApiVersion::V0 => execute(out, &client, command, json).await?,
        ApiVersion::V1 => execute_v1(out, &client, command, json).await?,
    }
    Ok(Exit::Success)
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
                out.stdout(&me_text(&me));
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
            let (agents, cursor) = pages(cursor, all, |cursor| async move {
                let page = client
                    .list_agents(Some(limit.min(MAX_PAGE)), cursor.as_deref())
                    .await?;
                Ok((page.agents, page.next_cursor))
            })
            .await?;
            if json {
                print_json(
                    out,
                    &serde_json::json!({ "agents": agents, "nextCursor": cursor }),
                );
            } else {
                out.stdout(&agent_table(&agents, out.terminal()));
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

fn agent_table(agents: &[Agent], terminal: Option<Terminal>) -> String {
    let mut table = Table::new(&["ID", "STATUS", "REPOSITORY", "BRANCH", "PR", "CREATED"]);
    for agent in agents {
        let repo = agent
            .repository()
            .unwrap_or("-")
            .trim_start_matches("https://github.com/");
        table.row([
            shown_id(&agent.id.0, terminal),
            agent.status.to_string(),
            repo.to_owned(),
            agent.branch().unwrap_or("-").to_owned(),
            agent.pr_url().unwrap_or("-").to_owned(),
            agent.created_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render(terminal)
}

/// An agent id, short in a terminal (as git shows commits), whole when piped.
fn shown_id(id: &str, terminal: Option<Terminal>) -> String {
    match terminal {
        Some(_) => short_id(id),
        None => id.to_owned(),
    }
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

async fn execute_v1(
    out: &Output,
    client: &Client,
    command: ApiCommand,
    json: bool,
) -> Result<(), ApiError> {
    match command {
        ApiCommand::Me => {
            let me = client.v1_me().await?;
            if json {
                print_json(out, &me);
            } else {
                out.stdout(&me_text(&me));
            }
        }
        ApiCommand::Models => {
            let models = client.v1_models().await?;
            if json {
                print_json(out, &serde_json::json!({ "items": models }));
            } else {
                let lines: String = models
                    .iter()
                    .map(|m| match &m.display_name {
                        Some(name) if name != &m.id => format!("{}\t{name}\n", m.id),
                        _ => format!("{}\n", m.id),
                    })
                    .collect();
                out.stdout(&lines);
            }
        }
        ApiCommand::Repos => {
            let repositories = client.v1_repositories().await?;
            if json {
                print_json(out, &serde_json::json!({ "items": repositories }));
            } else {
                let mut lines = String::new();
                for r in &repositories {
                    let name = r.url.trim_start_matches("https://github.com/");
                    let _ = writeln!(lines, "{name}\t{}", r.url);
                }
                out.stdout(&lines);
            }
        }
        ApiCommand::Agents(command) => agents_v1(out, client, command, json).await?,
    }
    Ok(())
}

async fn agents_v1(
    out: &Output,
    client: &Client,
    command: AgentsCommand,
    json: bool,
) -> Result<(), ApiError> {
    match command {
        AgentsCommand::List { limit, cursor, all } => {
            let (agents, cursor) = pages(cursor, all, |cursor| async move {
                let page = client
                    .v1_agents(Some(limit.min(MAX_PAGE)), cursor.as_deref(), true)
                    .await?;
                Ok((page.items, page.next_cursor))
            })
            .await?;
            if json {
                print_json(
                    out,
                    &serde_json::json!({ "items": agents, "nextCursor": cursor }),
                );
            } else {
                out.stdout(&agent_table_v1(&agents, out.terminal()));
                if let Some(cursor) = cursor {
                    out.status(&format!("more: orchestrate agents list --cursor {cursor}"));
                }
            }
        }
        AgentsCommand::Get { id } => {
            let agent = client.v1_agent(&AgentId(id)).await?;
            let latest = match &agent.latest_run_id {
                Some(run) => Some(client.v1_run(&agent.id, run).await?),
                None => None,
            };
            if json {
                print_json(
                    out,
                    &serde_json::json!({ "agent": agent, "latestRun": latest }),
                );
            } else {
                out.stdout(&agent_details_v1(&agent, latest.as_ref()));
            }
        }
        AgentsCommand::Conversation { id } => {
            let id = AgentId(id);
            let read = conversation_v1(client, &id).await?;
            if json {
                print_json(out, &serde_json::json!({ "id": id, "runs": read }));
            } else {
                out.stdout(&conversation_text_v1(&read));
            }
        }
        AgentsCommand::Stop { id } => stop_v1(out, client, &AgentId(id), json).await?,
        AgentsCommand::Delete { id } => {
            let deleted = client.v1_delete(&AgentId(id)).await?;
            if json {
                print_json(out, &serde_json::json!({ "id": deleted }));
            } else {
                out.stdout(&format!("deleted {deleted}\n"));
            }
        }
    }
    Ok(())
}

/// Cancels a v1 agent's latest run, if it has one still going.
async fn stop_v1(out: &Output, client: &Client, id: &AgentId, json: bool) -> Result<(), ApiError> {
    let agent = client.v1_agent(id).await?;
    let Some(run) = agent.latest_run_id.clone() else {
        out.stdout(&format!("{} has no run to stop\n", agent.id));
        return Ok(());
    };
    match client.v1_cancel_run(&agent.id, &run).await {
        Ok(cancelled) => {
            if json {
                print_json(out, &serde_json::json!({ "id": cancelled }));
            } else {
                out.stdout(&format!("cancelled run {cancelled} of {}\n", agent.id));
            }
        }
        Err(error) if error.conflict_code() == Some("run_not_cancellable") => {
            out.stdout(&format!(
                "{} is not running: its run {run} has ended\n",
                agent.id
            ));
        }
        Err(error) => return Err(error),
    }
    Ok(())
}

/// A v1 agent's runs, oldest first as a conversation reads, each read whole (lists leave
/// results out).
async fn conversation_v1(client: &Client, id: &AgentId) -> Result<Vec<v1::Run>, ApiError> {
    let (runs, _) = pages(None, true, |cursor| async move {
        let page = client
            .v1_runs(id, Some(MAX_PAGE), cursor.as_deref())
            .await?;
        Ok((page.items, page.next_cursor))
    })
    .await?;
    let mut read = Vec::new();
    for run in runs.iter().rev() {
        read.push(client.v1_run(id, &run.id).await?);
    }
    Ok(read)
}

/// Each run of a conversation: its id, status and time, then its result.
fn conversation_text_v1(runs: &[v1::Run]) -> String {
    let mut text = String::new();
    for run in runs {
        let took = run
            .duration_ms
            .map(|ms| {
                let seconds = std::time::Duration::from_secs(ms / 1000);
                format!(", {}", humantime::format_duration(seconds))
            })
            .unwrap_or_default();
        let result = run.result.as_deref().unwrap_or("(no result yet)");
        let _ = writeln!(
            text,
            "[{}] {}{took}\n{}\n",
            run.id,
            run.status,
            result.trim_end()
        );
    }
    text
}

fn agent_table_v1(agents: &[v1::Agent], terminal: Option<Terminal>) -> String {
    let mut table = Table::new(&["ID", "STATUS", "NAME", "LATEST RUN", "CREATED"]);
    for agent in agents {
        table.row([
            shown_id(&agent.id.0, terminal),
            agent.status.clone().unwrap_or_else(|| "-".into()),
            agent.name.clone().unwrap_or_else(|| "-".into()),
            agent
                .latest_run_id
                .as_ref()
                .map_or_else(|| "-".to_owned(), |r| shown_id(&r.0, terminal)),
            agent.created_at.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render(terminal)
}

/// The items of one page from after `cursor`, or of every page with `all`; and the cursor of
/// the next page, if any is left.
async fn pages<T, F, Fut>(
    mut cursor: Option<String>,
    all: bool,
    mut fetch: F,
) -> Result<(Vec<T>, Option<String>), ApiError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), ApiError>>,
{
    let mut items = Vec::new();
    loop {
        let (page, next) = fetch(cursor).await?;
        items.extend(page);
        cursor = next;
        if !all || cursor.is_none() {
            return Ok((items, cursor));
        }
    }
}

fn me_text(me: &crate::cursor::model::Me) -> String {
    format!(
        "key:     {}\nuser:    {}\ncreated: {}\n",
        me.api_key_name,
        me.user_email.as_deref().unwrap_or("-"),
        me.created_at.as_deref().unwrap_or("-")
    )
}

fn agent_details_v1(agent: &v1::Agent, latest: Option<&v1::Run>) -> String {
    let field = |name: &str, value: Option<&str>| format!("{name:<9} {}\n", value.unwrap_or("-"));
    let repo = agent.repos.first();
    let branch = latest
        .and_then(|r| r.git.as_ref())
        .and_then(|g| g.branches.first());
    let status = latest.map(|r| r.status.to_string());
    [
        field("id:", Some(agent.id.0.as_str())),
        field("status:", agent.status.as_deref()),
        field("name:", agent.name.as_deref()),
        field("repo:", repo.map(|r| r.url.as_str())),
        field("ref:", repo.and_then(|r| r.starting_ref.as_deref())),
        field(
            "run:",
            agent
                .latest_run_id
                .as_ref()
                .map(|r: &AgentRunId| r.0.as_str()),
        ),
        field("run is:", status.as_deref()),
        field("branch:", branch.and_then(|b| b.branch.as_deref())),
        field("pr:", branch.and_then(|b| b.pr_url.as_deref())),
        field("url:", agent.url.as_deref()),
        field("created:", agent.created_at.as_deref()),
        field("result:", latest.and_then(|r| r.result.as_deref())),
    ]
    .concat()
}
