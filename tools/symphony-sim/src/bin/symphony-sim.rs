//! `symphony-sim`: serves a seeded Symphony pod/agent/key manager on one HTTP origin until
//! killed. See the library documentation for the endpoints and the ground truth.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use symphony_sim::{
    Faults, SimConfig, StreamCounts, SuppressionMode, TEST_PRIVATE_KEY_PEM, TEST_USERNAME,
    test_private_key_path,
};

/// Spec-true Symphony simulator (test tool).
#[derive(Debug, Parser)]
#[command(name = "symphony-sim", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8443)]
    port: u16,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Total number of messages.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Number of IM streams.
    #[arg(long, default_value_t = StreamCounts::default().im)]
    ims: usize,
    /// Number of MIM streams.
    #[arg(long, default_value_t = StreamCounts::default().mim)]
    mims: usize,
    /// Number of ROOM streams.
    #[arg(long, default_value_t = StreamCounts::default().room)]
    rooms: usize,
    /// Number of POST (wall) streams.
    #[arg(long, default_value_t = StreamCounts::default().post)]
    posts: usize,
    /// Number of internal users (at least 4).
    #[arg(long, default_value_t = SimConfig::default().internal_users)]
    internal_users: usize,
    /// Number of external users.
    #[arg(long, default_value_t = SimConfig::default().external_users)]
    external_users: usize,
    /// Size of the one large attachment in MB (10^6 bytes; 0 = none).
    #[arg(long, default_value_t = 50.0)]
    large_attachment_mb: f64,
    /// Upper bound of ordinary attachment sizes in KiB.
    #[arg(long, default_value_t = 96)]
    max_attachment_kib: u64,
    /// When planned suppressions take effect.
    #[arg(long, value_enum, default_value_t = Suppressions::Pending)]
    suppressions: Suppressions,
    /// Session/key-manager token lifetime in seconds (default: one hour; 0 = unlimited).
    #[arg(long)]
    session_ttl_secs: Option<u64>,
    /// Streams the service account is a member of, and so may read: all, half or none.
    #[arg(long, default_value = "half")]
    membership: String,
    /// Status a non-member gets for messages and attachments (403 or 400).
    #[arg(long, default_value_t = 403)]
    non_member_status: u16,
    /// Milliseconds every API call waits before answering (a remote pod's round trip).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra rooms of `--extra-messages-each` plain messages, for pods of thousands of streams.
    #[arg(long, default_value_t = 0)]
    extra_rooms: usize,
    /// Extra IMs of `--extra-messages-each` plain messages.
    #[arg(long, default_value_t = 0)]
    extra_ims: usize,
    /// Messages in each extra room or IM.
    #[arg(long, default_value_t = 3)]
    extra_messages_each: usize,
    /// Faults, e.g. `429:every=40:burst=3:retry=1,expire:after=100,drop:every=7:on=attachment`
    /// (kinds: 429, 400, expire, 5xx, slow, drop; see the library docs of `Faults`).
    #[arg(long)]
    faults: Option<String>,
    /// Write the ground truth as JSON to this file.
    #[arg(long)]
    dump_ground_truth: Option<PathBuf>,
    /// Exit after writing the ground truth instead of serving.
    #[arg(long, requires = "dump_ground_truth")]
    dump_only: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Suppressions {
    Pending,
    Applied,
}

fn config(args: &Args) -> Result<SimConfig, symphony_sim::SimError> {
    let faults: Faults = match &args.faults {
        Some(spec) => spec.parse()?,
        None => Faults::default(),
    };
    let mut cfg = SimConfig::builder()
        .seed(args.seed)
        .bind(args.bind)
        .port(args.port)
        .messages(args.messages)
        .streams(args.ims, args.mims, args.rooms, args.posts)
        .users(args.internal_users, args.external_users)
        .large_attachment_bytes((args.large_attachment_mb * 1e6).round().max(0.0) as u64)
        .max_small_attachment_bytes(args.max_attachment_kib.max(1) * 1024)
        .suppressions(match args.suppressions {
            Suppressions::Pending => SuppressionMode::Pending,
            Suppressions::Applied => SuppressionMode::Applied,
        })
        .membership(args.membership.parse()?)
        .non_member_status(args.non_member_status)
        .latency(Duration::from_millis(args.latency_ms))
        .extra_streams(args.extra_rooms, args.extra_ims, args.extra_messages_each)
        .faults(faults);
    if let Some(ttl) = args.session_ttl_secs {
        cfg = cfg.session_ttl((ttl > 0).then(|| Duration::from_secs(ttl)));
    }
    Ok(cfg.build())
}

fn key_path() -> std::io::Result<PathBuf> {
    let p = test_private_key_path();
    if p.exists() {
        return Ok(p);
    }
    let p = std::env::temp_dir().join("symphony-sim-test-private-key.pem");
    std::fs::write(&p, TEST_PRIVATE_KEY_PEM)?;
    Ok(p)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("symphony-sim: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = config(&args)?;
    if args.dump_only {
        let truth = symphony_sim::generate_ground_truth(&cfg)?;
        if let Some(path) = &args.dump_ground_truth {
            std::fs::write(path, serde_json::to_vec_pretty(&truth)?)?;
            println!("ground truth written to {}", path.display());
        }
        return Ok(());
    }
    let sim = symphony_sim::start(cfg).await?;
    let truth = sim.ground_truth();
    if let Some(path) = &args.dump_ground_truth {
        std::fs::write(path, serde_json::to_vec_pretty(&truth)?)?;
    }
    println!("symphony-sim listening on {}", sim.base_url());
    println!(
        "  pod {0}/pod  agent {0}/agent  login {0}/login  key manager {0}/relay",
        sim.base_url()
    );
    println!(
        "  service account: {TEST_USERNAME} (TEST-ONLY private key: {})",
        key_path()?.display()
    );
    println!(
        "  data: seed {} - {} streams, {} messages, {} users",
        truth.seed,
        truth.streams.len(),
        truth.messages.len(),
        truth.users.len()
    );
    if let Some(path) = &args.dump_ground_truth {
        println!("  ground truth: {}", path.display());
    }
    if !sim.config().faults.is_empty() {
        println!("  faults: {:?}", sim.config().faults);
    }
    wait_for_termination().await?;
    sim.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn wait_for_termination() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
