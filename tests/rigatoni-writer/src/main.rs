//! Writes Rigatoni state to Redis through `rigatoni-stores` 0.2.0's real `RedisStore`.
//!
//! ```text
//! rigatoni-writer <redis_url> save <name> <hex _data> [ttl_secs]      {"_data": "<hex>"} (a string token)
//! rigatoni-writer <redis_url> save-bin <name> <hex bytes> [ttl_secs]  {"_data": BinData(0, bytes)}
//! rigatoni-writer <redis_url> save-v02 <db> <coll> <hex _data>        the name rigatoni-core 0.2.0's pipeline uses
//! rigatoni-writer <redis_url> delete <name>
//! rigatoni-writer <redis_url> lock <key> <owner> <ttl_secs>           prints acquired or held
//! rigatoni-writer <redis_url> release <key> <owner>                   prints released or not-owner
//! rigatoni-writer <redis_url> list                                    prints name=<canonical extended JSON> lines
//! ```
//! `<name>` is what Rigatoni calls the collection; the store writes it under `rigatoni:resume_token:<name>`.

use std::process::ExitCode;
use std::time::Duration;

use bson::{doc, spec::BinarySubtype, Binary, Bson};
use rigatoni_core::state::StateStore;
use rigatoni_core::watch_level::WatchLevel;
use rigatoni_stores::redis::{RedisConfig, RedisStore};

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd hex length: {s}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex {s}: {e}")))
        .collect()
}

async fn store(url: &str, ttl: Option<&String>) -> Result<RedisStore, String> {
    let mut builder = RedisConfig::builder().url(url).pool_size(1);
    if let Some(t) = ttl {
        let secs: u64 = t.parse().map_err(|e| format!("bad ttl {t}: {e}"))?;
        builder = builder.ttl(Duration::from_secs(secs));
    }
    let config = builder.build().map_err(|e| e.to_string())?;
    RedisStore::new(config).await.map_err(|e| e.to_string())
}

async fn run(args: &[String]) -> Result<(), String> {
    let usage = || "usage: rigatoni-writer <redis_url> save|save-bin|save-v02|delete|lock|release|list ...".to_string();
    let url = args.first().ok_or_else(usage)?;
    let cmd = args.get(1).ok_or_else(usage)?.as_str();
    let rest = &args[2..];
    let arg = |i: usize| rest.get(i).ok_or_else(usage);
    match cmd {
        "save" => {
            let s = store(url, rest.get(2)).await?;
            let token = doc! { "_data": arg(1)?.as_str() };
            s.save_resume_token(arg(0)?, &token).await.map_err(|e| e.to_string())
        }
        "save-bin" => {
            let s = store(url, rest.get(2)).await?;
            let bytes = hex(arg(1)?)?;
            let token = doc! { "_data": Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes }) };
            s.save_resume_token(arg(0)?, &token).await.map_err(|e| e.to_string())
        }
        "save-v02" => {
            let s = store(url, None).await?;
            let coll = arg(1)?.clone();
            let name = WatchLevel::Collection(vec![coll.clone()]).resume_token_key(arg(0)?, Some(&coll));
            let token = doc! { "_data": arg(2)?.as_str() };
            s.save_resume_token(&name, &token).await.map_err(|e| e.to_string())?;
            println!("{name}");
            Ok(())
        }
        "delete" => {
            let s = store(url, None).await?;
            s.delete_resume_token(arg(0)?).await.map_err(|e| e.to_string())
        }
        "lock" => {
            let s = store(url, None).await?;
            let secs: u64 = arg(2)?.parse().map_err(|e| format!("bad ttl: {e}"))?;
            let got = s
                .try_acquire_lock(arg(0)?, arg(1)?, Duration::from_secs(secs))
                .await
                .map_err(|e| e.to_string())?;
            println!("{}", if got { "acquired" } else { "held" });
            Ok(())
        }
        "release" => {
            let s = store(url, None).await?;
            let done = s.release_lock(arg(0)?, arg(1)?).await.map_err(|e| e.to_string())?;
            println!("{}", if done { "released" } else { "not-owner" });
            Ok(())
        }
        "list" => {
            let s = store(url, None).await?;
            let all = s.list_resume_tokens().await.map_err(|e| e.to_string())?;
            let mut names: Vec<_> = all.into_iter().collect();
            names.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, doc) in names {
                println!("{name}={}", Bson::Document(doc).into_canonical_extjson());
            }
            Ok(())
        }
        _ => Err(usage()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rigatoni-writer: {e}");
            ExitCode::FAILURE
        }
    }
}
