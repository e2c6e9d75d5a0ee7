"""Entity linking: brackets, plain questions, fuzzy names, aliases, vector fallback."""

from __future__ import annotations

from kgllm.linking import EntityLinker, normalize


def linker(movies, **kwargs) -> EntityLinker:
    return EntityLinker.from_snapshot(movies, **kwargs)


def test_normalize_drops_punctuation_and_case():
    assert normalize("Mr. & Mrs.  Smith") == "mr mrs smith"
    assert normalize("???") == ""


def test_bracketed_mention_is_linked_exactly(movies):
    mentions = linker(movies).mentions("who directed [Kismet]")
    assert mentions[0].text == "Kismet"
    assert mentions[0].links[0].id == "Kismet" and mentions[0].links[0].method == "bracket"
    assert mentions[0].links[0].score == 1.0


def test_same_question_without_brackets_links(movies):
    q = "what movies did Tom Hanks act in"
    mention = linker(movies).mentions(q)[0]
    assert mention.links[0].id == "Tom Hanks" and mention.links[0].method == "exact"
    assert q[mention.start:mention.end] == "Tom Hanks"


def test_longest_span_wins_over_contained_names(movies):
    # "Satan Met a Lady" contains no other entity, but "Lady" alone must not be preferred to the full title
    mention = linker(movies).mentions("who starred in satan met a lady")[0]
    assert mention.links[0].id == "Satan Met a Lady"


def test_fuzzy_match_for_misspelled_bracket(movies):
    links = linker(movies).link("who directed [Forest Gump]")
    assert links[0].id == "Forrest Gump" and links[0].method == "fuzzy"
    assert 0.8 < links[0].score < 1.0


def test_fuzzy_match_in_plain_question(movies):
    links = linker(movies).link("which films did robert zemekis direct")
    assert links and links[0].id == "Robert Zemeckis"


def test_alias_links_to_its_entity(movies):
    links = linker(movies, aliases={"Gump": "Forrest Gump", "Ghost": "Nobody"}).link("who directed Gump")
    assert links[0].id == "Forrest Gump" and links[0].method == "alias"


def test_no_linkable_entity(movies):
    assert linker(movies).link("what is the airspeed of an unladen swallow") == []
    assert linker(movies).link("") == []


def test_vector_fallback_uses_real_faiss_index(movies, embedder):
    from kgllm.index import VectorIndex

    names = ["Kismet", "Forrest Gump", "Tom Hanks", "William Dieterle"]
    index = VectorIndex.create(embedder.dim, model=embedder.model_name)
    index.add(names, embedder.encode(names))
    calls = []

    def provider():
        calls.append(1)
        return index

    lk = linker(movies, vector_index=provider, embedder=embedder)
    assert lk.link("who directed [Kismet]")[0].method == "bracket"
    assert calls == []  # exact links do not build the index
    links = lk.link("who directed [the film about a man named Gump, Forrest]")
    assert links and links[0].method == "vector" and links[0].id == "Forrest Gump"
    assert 0.0 < links[0].score <= 0.8
    assert lk.link("what is the airspeed velocity of an unladen swallow") == []  # below the cutoff


def test_bracket_prefers_the_name_as_written_and_links_punctuation_names():
    from reasoning_graphs import make_snapshot

    snapshot = make_snapshot([("King Kong", "has_tags", "king kong"), ("King Kong", "directed_by", "Peter Jackson"),
                              ("$", "starred_actors", "Goldie Hawn")])
    links = EntityLinker.from_snapshot(snapshot).mentions("who directed [King Kong]")[0].links
    assert [link.id for link in links] == ["King Kong"]  # not the tag "king kong" as well
    tag = EntityLinker.from_snapshot(snapshot).mentions("which films are tagged [king kong]")[0].links
    assert [link.id for link in tag] == ["king kong"]
    dollar = EntityLinker.from_snapshot(snapshot).mentions("who acted in [$]")
    assert dollar and dollar[0].links[0].id == "$" and dollar[0].links[0].method == "bracket"


def test_misspelled_and_lowercase_names_link_without_brackets(movies):
    from reasoning_graphs import MOVIE_TRIPLES, make_snapshot

    lk = linker(movies)
    for question, span, entity in [("who directed Forest Gump", "Forest Gump", "Forrest Gump"),
                                   ("what movies did Tom Hankss act in", "Tom Hankss", "Tom Hanks"),
                                   ("who starred in satan met a ladyy", "satan met a ladyy", "Satan Met a Lady"),
                                   ("which films did helen hunt act in", "helen hunt", "Helen Hunt")]:
        mention = lk.mentions(question)[0]
        assert mention.links[0].id == entity, question
        assert question[mention.start:mention.end] == span  # the span as written, for masking
    tagged = EntityLinker.from_snapshot(make_snapshot(MOVIE_TRIPLES + [("Kismet", "has_tags", "forest")]))
    assert tagged.mentions("who directed Forest Gump")[0].links[0].id == "Forrest Gump"  # not the tag "forest"
    fuzzy = lk.link("what movies did Tom Hankss act in")[0]
    assert fuzzy.method == "fuzzy" and 0.8 < fuzzy.score < 0.9  # below every exact link


def test_short_and_common_words_are_not_fuzzy_links():
    from reasoning_graphs import make_snapshot

    snapshot = make_snapshot([("lawyer", "AtLocation", "hell"), ("devil", "AtLocation", "hell"),
                              ("give assistance", "HasSubevent", "thank"), ("Shanks", "directed_by", "William Castle"),
                              ("ship", "AtLocation", "sea")])
    lk = EntityLinker.from_snapshot(snapshot)
    assert lk.link("hello there") == []  # "hell" inside "hello"
    assert lk.link("hi") == []  # "hi" inside "ship"
    assert [link.id for link in lk.link("thanks")] == ["thank"]  # its stem, not the film "Shanks" misspelled
    assert [link.id for link in lk.link("where are ships found")] == ["ship"]  # a plural, not "hi" in "ships"
    assert lk.link("who is [hello]") == []  # a 4-letter name is never matched approximately
    assert [link.id for link in lk.link("who directed [Shankss]")] == ["Shanks"]  # a bracketed typo links
    assert [link.id for link in lk.link("who acted in william castel films")] == ["William Castle"]


def test_typo_budget_grows_with_length():
    from kgllm.linking import typo_budget

    assert typo_budget("hello", "hell") == 0
    assert typo_budget("forest gump", "forrest gump") == 1
    assert typo_budget("the last of the mohicns", "the last of the mohicans") == 2
    assert typo_budget("thanks", "shanks", bracketed=False) == 0  # one short word of a plain question
    assert typo_budget("thanks", "shanks") == 1  # "[thanks]" is meant as a name
    assert typo_budget("produces", "producer", bracketed=False) == 0
    assert typo_budget("the parts", "the party", bracketed=False) == 0  # one content word: "parts"
    assert typo_budget("spielberrg", "spielberg", bracketed=False) == 1


def test_whole_question_vector_link_needs_a_close_match(movies, embedder):
    from kgllm.index import VectorIndex

    names = ["say hello", "Forrest Gump", "Tom Hanks"]
    index = VectorIndex.create(embedder.dim, model=embedder.model_name)
    index.add(names, embedder.encode(names))
    snapshot_names = list(movies.names) + ["say hello"]
    lk = EntityLinker("movies", snapshot_names, snapshot_names, vector_index=lambda: index, embedder=embedder)
    assert lk.link("hello there") == []  # "say hello" is similar (~0.57), not named
    links = lk.link("who directed [the film about a man named Gump, Forrest]")  # a mention: the usual cutoff
    assert links and links[0].id == "Forrest Gump" and links[0].method == "vector"


def test_equal_mentions_prefer_the_better_connected_entity():
    from kgllm.eval.kgdata import snapshot_from_triples

    triples = [("fox", "AtLocation", place) for place in ("wood", "hole", "den", "field")]
    triples += [("usually", "RelatedTo", "often")]
    linker = EntityLinker.from_snapshot(snapshot_from_triples(triples, domain="commonsense"))
    mentions = linker.mentions("Where is a fox usually found?")
    assert [m.text for m in mentions][:2] == ["fox", "usually"]  # equal exact links; "fox" has 4 edges, "usually" 1
    assert mentions[0].score == mentions[1].score


def test_equal_candidates_link_in_name_order_whatever_the_node_order(embedder):
    # names differing only in case embed alike (MiniLM is uncased) and tie for the fuzzy matcher; the
    # stores number nodes differently (load order locally, key order in Neo4j): links come in (name, id) order
    from kgllm.index import VectorIndex

    names = ["Big", "Tom Hanks", "tom hanks", "TOM HANKS", "Forrest Gump"]
    questions = ["who acted in [Hanks, Tom]", "which films did [Tom Hank's] star in"]
    seen = []
    for order in (names, names[::-1]):  # node order = insertion order of the vector index
        index = VectorIndex.create(embedder.dim, model=embedder.model_name)
        index.add(order, embedder.encode(order))
        lk = EntityLinker("movies", order, order, vector_index=lambda index=index: index, embedder=embedder)
        seen.append([[(link.id, link.method) for link in lk.link(q)] for q in questions])
    assert seen[0] == seen[1]
    vector, fuzzy = seen[0]
    assert vector == [(name, "vector") for name in ["TOM HANKS", "Tom Hanks", "tom hanks"]]
    assert fuzzy == [(name, "fuzzy") for name in ["TOM HANKS", "Tom Hanks", "tom hanks"]]


def test_names_and_questions_in_decomposed_unicode_link():
    """A file written with combining accents (NFD) and a question typed composed (NFC), or the reverse."""
    import unicodedata

    from kgllm.eval.kgdata import snapshot_from_triples

    nfd = unicodedata.normalize("NFD", "Zoë Müller")
    snap = snapshot_from_triples([(nfd, "knows", "José Álvarez"), ("Zoe", "knows", "Jo")], domain="people")
    for question in ("Who does [Zoë Müller] know?", "who does Zoë Müller know",
                     unicodedata.normalize("NFD", "Who does [Zoë Müller] know?")):
        text = unicodedata.normalize("NFC", question)  # as the pipeline passes it
        links = EntityLinker.from_snapshot(snap).link(text)
        assert links and links[0].id == nfd, question
    assert normalize(nfd) == normalize("Zoë Müller") == "zoë müller"
