//! Property tests: any generated valid workflow plans without panic, and the plan's order
//! respects every edge; and no input text makes the loader panic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use orchestrate::plan::{Options, Plan};
use orchestrate::spec::{self, SourceFile};
use proptest::prelude::*;
use serde_json::json;

const POOL: usize = 12;

/// A task: where it runs, which tasks it may need, how it reacts to them.
#[derive(Debug, Clone)]
struct TaskShape {
    fleet: Option<usize>,
    repo: usize,
    needs: Vec<bool>,
    condition: usize,
    follow_ups: usize,
}

#[derive(Debug, Clone)]
struct WorkflowShape {
    fleets: Vec<BTreeSet<usize>>,
    tasks: Vec<TaskShape>,
    /// A random order; a task may only need tasks ranked before it, so there is no cycle,
    /// while the file order stays random.
    rank: Vec<usize>,
}

fn workflow_shape() -> impl Strategy<Value = WorkflowShape> {
    (0usize..4, 1usize..9).prop_flat_map(|(fleets, tasks)| {
        let task = (
            proptest::option::of(0..fleets.max(1)),
            0..POOL,
            proptest::collection::vec(any::<bool>(), tasks),
            0usize..3,
            0usize..3,
        )
            .prop_map(
                move |(fleet, repo, needs, condition, follow_ups)| TaskShape {
                    fleet: fleet.filter(|_| fleets > 0),
                    repo,
                    needs,
                    condition,
                    follow_ups,
                },
            );
        (
            proptest::collection::vec(proptest::collection::btree_set(0..POOL, 1..6), fleets),
            proptest::collection::vec(task, tasks),
            Just((0..tasks).collect::<Vec<_>>()).prop_shuffle(),
        )
            .prop_map(|(fleets, tasks, rank)| WorkflowShape {
                fleets,
                tasks,
                rank,
            })
    })
}

fn url(repo: usize) -> String {
    format!("https://github.com/acme/repo-{repo}")
}

fn needs_of(shape: &WorkflowShape, task: usize) -> Vec<usize> {
    (0..shape.tasks.len())
        .filter(|&other| shape.tasks[task].needs[other] && shape.rank[other] < shape.rank[task])
        .collect()
}

fn to_yaml(shape: &WorkflowShape) -> String {
    let fleets: BTreeMap<String, Vec<String>> = shape
        .fleets
        .iter()
        .enumerate()
        .map(|(i, repos)| {
            (
                format!("fleet-{i}"),
                repos.iter().map(|&r| url(r)).collect(),
            )
        })
        .collect();
    let mut tasks = serde_json::Map::new();
    for (index, task) in shape.tasks.iter().enumerate() {
        let needs: Vec<String> = needs_of(shape, index)
            .iter()
            .map(|n| format!("t{n}"))
            .collect();
        let mut prompt = "Work on {{ repo.name }} for {{ run.name }}.".to_owned();
        for need in &needs {
            let _ = write!(prompt, " After {{{{ needs[\"{need}\"] }}}}.");
        }
        let condition = ["all_succeeded", "any_succeeded", "always"][task.condition];
        let mut value = json!({
            "prompt": prompt,
            "needs": needs,
            "if": condition,
            "follow_ups": (0..task.follow_ups)
                .map(|n| json!({"prompt": format!("Follow-up {n} for {{{{ agent.branch }}}}"), "if": "not agent.pr_url"}))
                .collect::<Vec<_>>(),
        });
        match task.fleet {
            Some(fleet) => value["fleet"] = json!(format!("fleet-{fleet}")),
            None => value["repo"] = json!(url(task.repo)),
        }
        tasks.insert(format!("t{index}"), value);
    }
    let workflow = json!({ "version": 1, "name": "generated", "fleets": fleets, "tasks": tasks });
    serde_yaml::to_string(&workflow).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_workflows_plan_in_an_order_that_respects_every_edge(shape in workflow_shape()) {
        let yaml = to_yaml(&shape);
        let workflow = spec::parse(&SourceFile::new("generated.yaml", yaml.clone()))
            .unwrap_or_else(|errors| panic!("{yaml}\n{errors:#?}"));
        let plan = Plan::build(&workflow, &Options::default()).expect("plans");

        let expected: usize = shape.tasks.iter().map(|t| t.fleet.map_or(1, |f| shape.fleets[f].len())).sum();
        prop_assert_eq!(plan.instances.len(), expected);
        let mut in_waves: Vec<usize> = plan.waves.concat();
        in_waves.sort_unstable();
        prop_assert_eq!(in_waves, (0..plan.instances.len()).collect::<Vec<_>>());

        for (index, instance) in plan.instances.iter().enumerate() {
            for &need in &instance.needs {
                prop_assert!(need < index, "{} comes before its need", instance.key);
                prop_assert!(plan.instances[need].wave < instance.wave);
            }
            // Needs between tasks over the same fleet pair per repository; else all.
            let task_index: usize = instance.task.as_str()[1..].parse().unwrap();
            let task = &shape.tasks[task_index];
            for need_task in needs_of(&shape, task_index) {
                let of_task: Vec<usize> = instance.needs.iter().copied()
                    .filter(|&n| plan.instances[n].task.as_str() == format!("t{need_task}"))
                    .collect();
                let need_shape = &shape.tasks[need_task];
                if task.fleet.is_some() && task.fleet == need_shape.fleet {
                    prop_assert_eq!(of_task.len(), 1);
                    prop_assert_eq!(&plan.instances[of_task[0]].repo, &instance.repo);
                } else {
                    let all = need_shape.fleet.map_or(1, |f| shape.fleets[f].len());
                    prop_assert_eq!(of_task.len(), all);
                }
            }
            let wave = instance.needs.iter().map(|&n| plan.instances[n].wave + 1).max().unwrap_or(0);
            prop_assert_eq!(instance.wave, wave);
        }
    }

    #[test]
    fn no_text_makes_the_loader_panic(text in "\\PC{0,300}") {
        let _ = spec::parse(&SourceFile::new("any.yaml", text));
    }

    #[test]
    fn no_mutation_of_a_valid_workflow_makes_the_loader_panic(
        cut in 0usize..2000,
        insert in "[ \\t\\n:{}\\[\\]&*!|>'\"#%@`,?-]{0,4}",
    ) {
        let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/workflows/dependency-sweep.yaml")).unwrap();
        let mut cut = cut.min(base.len());
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        let text = format!("{}{insert}{}", &base[..cut], &base[cut..]);
        if let Ok(workflow) = spec::parse(&SourceFile::new("mutated.yaml", text)) {
            let _ = Plan::build(&workflow, &Options::default());
        }
    }
}
