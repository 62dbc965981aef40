"""Text-quality heuristics: words, Gopher quality/repetition, C4, FineWeb, keyword lists."""

from __future__ import annotations

import pytest

from vla_data.textfilters import (
    EN_STOP_WORDS,
    ZH_STOP_WORDS,
    C4QualityFilter,
    FilterResult,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    KeywordFilter,
    TextFilter,
    c4_badwords_filter,
    count_sentences,
    count_words,
    load_terms,
    split_sentences,
    split_words,
)
from vla_data.textfilters.c4 import C4_END_MARKS
from vla_data.textfilters.keywords import PLACEHOLDER_BLOCKLIST, KeywordMatcher
from vla_data.textfilters.pii import PiiRedactor
from vla_data.textfilters.words import ends_with_terminal

EN = (
    "Robot learning is one of the fastest moving areas of machine learning research today.\n"
    "Instead of writing rules for every motion, researchers want robots to acquire new skills by "
    "watching people and by practicing on their own in the lab.\n"
    "To make that work, a team has to collect large amounts of clean data: camera images, joint "
    "angles and the language instructions that people give while they demonstrate a task.\n"
    "After the data is filtered and aligned, it can be used to train a single model that reads "
    "images, understands instructions and predicts the next action of the arm.\n"
    "Deployment brings its own problems, such as changing light, occluded objects and noisy "
    "sensors.\n"
    "That is why evaluation should never stop at the success rate measured in a tidy laboratory."
)
ZH = (
    "机器人学习是人工智能研究中一个快速发展的方向。研究人员希望让机器人通过观察和练习掌握新的技能，"
    "而不是依靠工程师为每一个动作编写规则。\n"
    "为了做到这一点，团队需要收集大量高质量的数据，包括相机图像、关节角度以及人类给出的语言指令。"
    "这些数据经过清洗和对齐之后，才能用来训练一个同时理解视觉、语言和动作的模型。\n"
    "在实际部署中，模型还必须应对光照变化、物体遮挡和传感器噪声等问题。"
    "因此，评估不能只看实验室里的成功率，还要在真实的家庭和工厂环境中反复测试。\n"
    "我们相信，开放的数据集和透明的评测标准会帮助整个领域更快地进步。"
)
NO_STOP_WORDS = "robots learn quickly from careful human demonstrations in cluttered kitchens " * 6
CJK_AWARE_GOPHER = GopherQualityFilter(stop_words={"en": EN_STOP_WORDS, "zh": ZH_STOP_WORDS})


# ---------------------------------------------------------------- words


def test_split_words_counts_each_cjk_character_as_a_word() -> None:
    assert split_words("我爱NLP和AI！") == ["我", "爱", "NLP", "和", "AI"]
    assert split_words("カタカナー ひらがな") == [
        "カ",
        "タ",
        "カ",
        "ナ",
        "ー",
        "ひ",
        "ら",
        "が",
        "な",
    ]
    assert split_words("한국어 text") == ["한", "국", "어", "text"]
    assert split_words("naïve café, 2024年") == ["naïve", "café", "2024", "年"]
    assert split_words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # vowel signs stay inside the word
    assert count_words(ZH.replace("\n", "")) == len(split_words(ZH))
    assert count_words("") == 0


def test_split_sentences_knows_cjk_terminators() -> None:
    assert split_sentences("你好。今天天气很好！你呢？他说：“好。”然后走了") == [
        "你好。",
        "今天天气很好！",
        "你呢？",
        "他说：“好。”",
        "然后走了",
    ]
    assert split_sentences("Hello world. How are you? Fine!! Pi is 3.14 today") == [
        "Hello world.",
        "How are you?",
        "Fine!!",
        "Pi is 3.14 today",
    ]
    assert count_sentences("First part\n\nsecond part. ...") == 2
    assert count_sentences("") == 0


def test_ends_with_terminal() -> None:
    assert ends_with_terminal("他说：“好。”")
    assert ends_with_terminal("等一下……")
    assert ends_with_terminal("Done.  \r")
    assert not ends_with_terminal("他说：“好。”", closers="")
    assert not ends_with_terminal("no stop")


def test_filters_share_the_protocol() -> None:
    for f in (
        GopherQualityFilter(),
        GopherRepetitionFilter(),
        C4QualityFilter(),
        FineWebQualityFilter(),
        KeywordFilter(),
        PiiRedactor(),
    ):
        assert isinstance(f, TextFilter)
        result = f.check(EN)
        assert result == FilterResult(True, None, result.scores)
        assert all(isinstance(v, float) for v in result.scores.values())


# ---------------------------------------------------------------- Gopher quality


def _bullets(text: str) -> str:
    return "\n".join("- " + line for line in text.splitlines())


def _end_ellipsis(text: str) -> str:
    return "\n".join(line + "..." for line in text.splitlines())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("The cat and the dog sat on the mat.", "gopher_short_doc"),
        ("robot arm " * 50_001, "gopher_long_doc"),
        ("to be or no it is of an on at up by " * 6, "gopher_below_avg_threshold"),
        ("internationalization characteristically " * 30, "gopher_above_avg_threshold"),
        (EN + " #tag" * 20, "gopher_too_many_hashes"),
        (EN + " ..." * 20, "gopher_too_many_ellipsis"),
        (_bullets(EN), "gopher_too_many_bullets"),
        (_end_ellipsis(EN), "gopher_too_many_end_ellipsis"),
        (EN + " 12345" * 60, "gopher_below_alpha_threshold"),
        (NO_STOP_WORDS, "gopher_few_stop_words"),
    ],
)
def test_gopher_quality_drops(text: str, reason: str) -> None:
    result = GopherQualityFilter().check(text)
    assert (result.keep, result.reason) == (False, reason)
    assert reason in GopherQualityFilter.REASONS


def test_gopher_quality_keeps_good_english_with_measured_scores() -> None:
    result = GopherQualityFilter().check(EN)
    assert result.keep and result.reason is None
    s = result.scores
    words = split_words(EN)
    assert s["gopher_n_words"] == len(words) == 129
    assert s["gopher_avg_word_length"] == pytest.approx(sum(map(len, words)) / len(words))
    assert s["gopher_stop_words"] == 6  # the, to, of, and, that, be... counted once each
    assert s["gopher_alpha_words_ratio"] == 1.0
    assert s["gopher_cjk_word_ratio"] == 0.0


def test_gopher_stop_words_are_case_insensitive_and_language_aware() -> None:
    f = GopherQualityFilter()
    assert f.measure("The robot AND the arm")["gopher_stop_words"] == 2
    # no stop-word list for German: the rule is skipped, not failed
    result = f.check(NO_STOP_WORDS, language="de-DE")
    assert result.keep and "gopher_stop_words" not in result.scores
    assert GopherQualityFilter(language="de").check(NO_STOP_WORDS).keep
    assert f.check(NO_STOP_WORDS, language="en_US").reason == "gopher_few_stop_words"


def test_gopher_quality_chinese_document() -> None:
    # avg-word-length rule is skipped for CJK-dominated text; zh has no default stop-word list
    result = GopherQualityFilter().check(ZH, language="zh")
    assert result.keep, result
    assert result.scores["gopher_cjk_word_ratio"] == 1.0
    assert "gopher_avg_word_length" not in result.scores
    assert "gopher_stop_words" not in result.scores
    # with a Chinese stop-word set configured the rule applies and passes
    result = CJK_AWARE_GOPHER.check(ZH, language="zh-Hans")
    assert result.keep and result.scores["gopher_stop_words"] >= 2
    # judged as English it fails only the English stop-word rule
    assert GopherQualityFilter().check(ZH).reason == "gopher_few_stop_words"
    # a few CJK characters in English text do not change the mean word length
    mixed = GopherQualityFilter().measure(EN + " 机器人")
    assert (
        mixed["gopher_avg_word_length"]
        == GopherQualityFilter().measure(EN)["gopher_avg_word_length"]
    )


def test_gopher_quality_threshold_replay() -> None:
    scores = GopherQualityFilter().measure(EN)
    for cfg in ({"min_doc_words": 200}, {"max_avg_word_length": 4.0}, {"min_stop_words": 7}):
        stricter = GopherQualityFilter(**cfg)
        assert stricter.decide(scores) == stricter.check(EN)
        assert not stricter.decide(scores).keep
    assert GopherQualityFilter(min_doc_words=None).check("tiny text with the of").keep


# ---------------------------------------------------------------- Gopher repetition

# len 64; paragraphs ["alpha beta gamma"] * 2 + ["delta epsilon\nzeta eta theta"]
REP_A = "alpha beta gamma\n\nalpha beta gamma\n\ndelta epsilon\nzeta eta theta"
# len 51; 11 words, the 5-gram "one two three four five" occurs twice
REP_B = "one two three four five six one two three four five"


def test_gopher_repetition_hand_computed_fractions() -> None:
    assert len(REP_A) == 64 and len(REP_B) == 51
    s = GopherRepetitionFilter().measure(REP_A)
    assert s["gopher_dup_para_frac"] == pytest.approx(1 / 3)
    assert s["gopher_dup_para_char_frac"] == pytest.approx(16 / 64)
    assert s["gopher_dup_line_frac"] == pytest.approx(1 / 4)  # lines split on \n+
    assert s["gopher_dup_line_char_frac"] == pytest.approx(16 / 64)
    assert s["gopher_top_2gram_char_frac"] == pytest.approx(2 * len("alpha beta") / 64)
    assert s["gopher_top_3gram_char_frac"] == pytest.approx(2 * len("alpha beta gamma") / 64)
    # every 4-gram occurs once: the first one counts once
    assert s["gopher_top_4gram_char_frac"] == pytest.approx(len("alpha beta gamma alpha") / 64)
    assert all(s[f"gopher_dup_{n}gram_char_frac"] == 0 for n in range(5, 11))

    s = GopherRepetitionFilter().measure(REP_B)
    assert s["gopher_top_2gram_char_frac"] == pytest.approx(2 * len("one two") / 51)
    # duplicate 5-gram: characters of its words, no separators: 3+3+5+4+4
    assert s["gopher_dup_5gram_char_frac"] == pytest.approx(19 / 51)
    assert s["gopher_dup_6gram_char_frac"] == 0


def test_gopher_repetition_cjk_ngrams_have_no_separators() -> None:
    s = GopherRepetitionFilter().measure("天天向上，天天向上。")  # 10 chars, 8 words
    assert s["gopher_top_2gram_char_frac"] == pytest.approx(2 * 2 / 10)
    assert s["gopher_top_3gram_char_frac"] == pytest.approx(2 * 3 / 10)


_ONLY = {"dup_line_frac": None, "dup_para_frac": None}
_NONE = {**_ONLY, "dup_line_char_frac": None, "dup_para_char_frac": None}
_REPEATED = "each of these twelve words is different from all the other ones " * 2
_CHANT = "go team " * 20


@pytest.mark.parametrize(
    ("cfg", "text", "reason"),
    [
        ({}, REP_A, "gopher_dup_para_frac"),
        ({"dup_para_frac": None}, REP_A, "gopher_dup_para_char_frac"),
        ({}, "x y z\nx y z\nq r s", "gopher_dup_line_frac"),
        ({"dup_line_frac": None}, "x y z\nx y z\nq r s", "gopher_dup_line_char_frac"),
        *(
            (
                {**_NONE, "top_n_grams": ((n, t),), "dup_n_grams": ()},
                _CHANT,
                f"gopher_top_{n}gram_char_frac",
            )
            for n, t in GopherRepetitionFilter().top_n_grams
        ),
        *(
            (
                {**_NONE, "top_n_grams": (), "dup_n_grams": ((n, t),)},
                _REPEATED,
                f"gopher_dup_{n}gram_char_frac",
            )
            for n, t in GopherRepetitionFilter().dup_n_grams
        ),
        ({}, "", "gopher_rep_empty"),
    ],
)
def test_gopher_repetition_drops(cfg: dict, text: str, reason: str) -> None:
    result = GopherRepetitionFilter(**cfg).check(text)
    assert (result.keep, result.reason) == (False, reason)
    assert reason in GopherRepetitionFilter.REASONS


def test_gopher_repetition_keeps_and_replays() -> None:
    f = GopherRepetitionFilter()
    assert f.check(EN).keep and f.check(ZH).keep
    scores = f.measure(REP_A)
    lenient = GopherRepetitionFilter(0.5, 0.5, 0.5, 0.5, ((2, 0.5), (3, 0.5), (4, 0.5)))
    assert lenient.decide(scores) == lenient.check(REP_A)
    assert lenient.decide(scores).keep


# ---------------------------------------------------------------- C4


def test_c4_keeps_good_page_unchanged() -> None:
    cleaned = C4QualityFilter().clean(EN)
    assert cleaned.result.keep and cleaned.text == EN and cleaned.removed == ()
    assert cleaned.result.scores["c4_sentences"] == 6


def test_c4_removes_lines_with_reasons() -> None:
    extra = [
        "Click the menu to continue",
        "And then it waited for the bus...",
        "Too short.",
        "Please enable JavaScript to see the comments.",
        "Read our privacy policy before you continue.",
        "This site uses cookies to improve your experience.",
        "x" * 1001 + " is one very long token.",
        "This claim comes with a citation.[12]",
        "机器人",
    ]
    text = EN + "\n" + "\n".join(extra)
    cleaned = C4QualityFilter().clean(text)
    n = len(EN.splitlines())
    assert cleaned.removed == (
        (n, "c4_no_terminal_punct"),
        (n + 1, "c4_no_terminal_punct"),
        (n + 2, "c4_too_few_words"),
        (n + 3, "c4_javascript"),
        (n + 4, "c4_policy"),
        (n + 5, "c4_policy"),
        (n + 6, "c4_too_long_word"),
        (n + 8, "c4_no_terminal_punct"),
    )
    assert cleaned.text == EN + "\nThis claim comes with a citation."
    assert cleaned.result.keep
    assert cleaned.result.scores["c4_lines_policy"] == 2
    assert cleaned.result.scores["c4_lines_kept"] == n + 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (EN + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", "c4_lorem_ipsum"),
        (EN + "\nThe config is {a: 1} in this example.", "c4_curly_bracket"),
        ("One two three four.\nFive six seven eight.", "c4_too_few_sentences"),
    ],
)
def test_c4_page_drops(text: str, reason: str) -> None:
    result = C4QualityFilter().check(text)
    assert (result.keep, result.reason) == (False, reason)
    assert reason in C4QualityFilter.REASONS


def test_c4_bracket_in_removed_line_does_not_drop_page() -> None:
    assert C4QualityFilter().check(EN + "\nfunction f() {").keep
    assert not C4QualityFilter(filter_curly_bracket=True).check(EN + "\nUse {x} here.").keep
    assert C4QualityFilter(filter_curly_bracket=False).check(EN + "\nUse {x} here.").keep


def test_c4_chinese_lines() -> None:
    cleaned = C4QualityFilter().clean(ZH + "\n你好。")
    assert cleaned.result.keep and cleaned.text == ZH
    assert cleaned.removed == ((4, "c4_too_few_words"),)
    # with only the original ASCII end marks every Chinese line is removed
    assert C4QualityFilter(end_marks=C4_END_MARKS).check(ZH).reason == "c4_too_few_sentences"


def test_c4_replay() -> None:
    scores = C4QualityFilter().measure(EN)
    assert C4QualityFilter(min_num_sentences=7).decide(scores).reason == "c4_too_few_sentences"
    assert C4QualityFilter(min_num_sentences=6).decide(scores).keep


# ---------------------------------------------------------------- FineWeb

_NO_PUNCT = "\n".join(f"this line number {i} has no terminal punctuation in it" for i in range(10))
_SHORT = "\n".join(f"Item number {i} is here." for i in range(10))
_LIST = "\n".join(f"Supercalifragilisticexpialidocious number{i}." for i in range(10))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("\n  \n\n", "fineweb_empty"),
        (_NO_PUNCT, "fineweb_line_punct_ratio"),
        (_SHORT, "fineweb_short_line_ratio"),
        (EN + "\n" + EN.splitlines()[-1], "fineweb_char_dup_ratio"),
        (_LIST, "fineweb_list_ratio"),
    ],
)
def test_fineweb_drops(text: str, reason: str) -> None:
    result = FineWebQualityFilter().check(text)
    assert (result.keep, result.reason) == (False, reason)
    assert reason in FineWebQualityFilter.REASONS


def test_fineweb_keeps_english_and_chinese() -> None:
    f = FineWebQualityFilter()
    assert f.check(EN).keep
    result = f.check(ZH)
    assert result.keep and result.scores["fineweb_line_punct_ratio"] == 1.0
    # CJK terminators, the ellipsis and a closing quote after the terminator all count
    text = "他说：“我们明天出发。”\n真的吗？\n好吧……\n没有标点的一行"
    assert f.measure(text)["fineweb_line_punct_ratio"] == 0.75
    assert f.measure(EN.replace("\n", "\r\n"))["fineweb_line_punct_ratio"] == 1.0


def test_fineweb_exclude_zero_and_replay() -> None:
    assert FineWebQualityFilter(line_punct_exclude_zero=True).check(_NO_PUNCT).keep
    scores = FineWebQualityFilter().measure(EN)
    strict = FineWebQualityFilter(new_line_ratio=0.01)
    assert strict.decide(scores) == strict.check(EN)
    assert strict.decide(scores).reason == "fineweb_list_ratio"


# ---------------------------------------------------------------- keywords


def test_load_terms_with_comments(tmp_path) -> None:
    path = tmp_path / "ads.txt"
    path.write_text(
        "# ad phrases\nclick here\n\n  buy   now   # inline comment\n限时优惠\n", encoding="utf-8"
    )
    assert load_terms(path) == ("click here", "buy now", "限时优惠")
    f = KeywordFilter.from_files(path, name="ads_file", max_hits=0)
    assert f.check("Buy now!").reason == "ads_file_hits"


def test_keyword_matching_latin_boundaries_and_cjk_substrings() -> None:
    m = KeywordMatcher(("click here", "buy now", "限时优惠"))
    assert m.counts("Click  HERE, then buy now!") == {"click here": 1, "buy now": 1}
    assert m.counts("clickhere; rebuy now; buy nowhere") == {}
    assert m.counts("今天限时优惠，点击click here了解") == {"限时优惠": 1, "click here": 1}
    assert KeywordMatcher(("here",), word_boundaries=False).counts("therefore here") == {"here": 2}
    assert KeywordMatcher(("Here",), case_sensitive=True).counts("here Here") == {"Here": 1}


def test_keyword_filter_density_and_hits() -> None:
    text = " ".join(["word"] * 198 + ["buy", "now"]) + " click here"  # 202 words, 2 hits
    s = KeywordFilter().measure(text)
    assert s == {
        "ads_hits": 2.0,
        "ads_hits_per_1k_words": pytest.approx(2000 / 202),
        "ads_distinct_terms": 2.0,
    }
    assert KeywordFilter().check(text).reason == "ads_density"
    assert KeywordFilter(max_hits_per_1k_words=20).check(text).keep
    assert KeywordFilter(max_hits=1, max_hits_per_1k_words=None).check(text).reason == "ads_hits"
    assert KeywordFilter().check(EN).keep and KeywordFilter().check(ZH).keep
    assert KeywordFilter().check("全场包邮，限时优惠，立即购买！").reason == "ads_density"


def test_c4_badwords_style_filter() -> None:
    f = c4_badwords_filter(PLACEHOLDER_BLOCKLIST)
    assert f.check("This page has a blockedterm in it.").reason == "c4_badwords_hits"
    assert f.check("This page has blockedterms in it.").keep  # whole words only
    assert f.check(EN).keep
    zh = c4_badwords_filter(["禁用词示例", "性"], language="zh")
    assert zh.check("这款手机的性能很好。").keep  # "性" is on the TFDS allow-list
    assert zh.check("这里有禁用词示例。").reason == "c4_badwords_hits"
