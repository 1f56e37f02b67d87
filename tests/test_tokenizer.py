"""PaliGemma-style SentencePiece tokenizers load through PromptTokenizer (a tiny model trained here, offline)."""
import numpy as np
import pytest

def _train_sp(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    text = ["open the top drawer of the cabinet", "close the top drawer of the cabinet", "turn on the stove",
            "turn off the stove", "put the bowl at the front of the table", "Task: State: Action:"] * 20
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_prefix=str(tmp_path / "tok"), vocab_size=60,
        model_type="bpe", pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", user_defined_symbols=["\n"] + [str(i) for i in range(10)],
        character_coverage=1.0, minloglevel=2)
    return tmp_path / "tok.model"

def test_sentencepiece_prompt_formats(tmp_path):
    from vlasteer.policy import PromptTokenizer
    tok = PromptTokenizer.from_file(_train_sp(tmp_path))
    assert tok.bos_id == 2
    e = tok.encode("turn on the stove", max_len=20)  # pi0: BOS + text + "\n"
    ids = e["ids"][e["mask"]]
    assert ids[0] == 2 and tok.token(ids[-1]) == "\n"
    assert "".join(tok.token(i) for i in e["ids"][e["instruction"]]).replace("\u2581", " ").strip() == "turn on the stove"
    e = tok.encode("turn on the stove", state=np.array([0.0, 0.5]), discrete_state=True, max_len=40)  # pi0.5
    state = "".join(tok.token(i) for i in e["ids"][e["state"]]).replace("\u2581", " ").strip()
    assert state == "128 192"
    assert not (e["state"] & e["instruction"]).any()

def test_sentencepiece_checkpoint_roundtrip(tmp_path):
    from vlasteer.policy import PromptTokenizer, tiny_policy
    from vlasteer.checkpoints import save_policy, load_policy
    tok = PromptTokenizer.from_file(_train_sp(tmp_path))
    pol = tiny_policy("pi0"); pol.tokenizer = tok
    save_policy(pol, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "tokenizer.model").exists()
    back = load_policy(tmp_path / "ckpt")
    obs = pol.example_observation()
    np.testing.assert_allclose(back.infer(obs)["actions"], pol.infer(obs)["actions"], atol=1e-6)
