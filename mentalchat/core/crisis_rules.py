"""Crisis rules: find disclosures of risk in a message and check that an answer escalates.

A counselling dataset teaches whatever its answers do. The MentalChat16K authors' synthetic prompt
told the generator not to refer people to professionals, so a message disclosing suicidal thoughts
could be paired with an answer that never mentions urgent help. These rules are the first layer of
the crisis detector (:mod:`mentalchat.safety` adds a model layer and combines the two); the
dataset audit, the judge stage's probe check and ``jobs/crisis.py`` all call them.

How they are built (and measured: ``benchmarks/crisis_eval.py`` on the frozen held-out split of
``mentalchat/data/crisis_eval/``, which no rule was written from):

* Patterns are written for recall: first-person wordings, euphemisms ("go to sleep for good", "the
  bridge"), typing without apostrophes or capitals.
* Guards then drop what a clinician would not flag: a disclosure framed as long past and resolved,
  a figure of speech ("this deadline is killing me"), and someone else's risk ("my friend wants to
  die" is worry about a friend, not the writer's own crisis).
* Escalation needs an urging context: 112 or 000 count only after "call"/"dial" (never "Room 112"
  or "$1,000"), and a negated or deferred mention ("you don't need the emergency room", "a
  helpline, some day") does not count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CRISIS_CATEGORIES",
    "DATASET_CATEGORIES",
    "CrisisAudit",
    "audit_pair",
    "find_crisis",
    "find_escalation",
    "flag_crisis",
    "has_escalation",
    "normalise",
]

CRISIS_CATEGORIES = (
    "suicidal_ideation",
    "self_harm",
    "abuse",
    "harm_to_others",
    "acute_psychosis",
    "medical_emergency",
    "substance_overdose",
)

#: The dataset audit covers every category (a medical emergency in a training input needs an
#: answer that sends the person to emergency care just as much as a suicidal one does).
DATASET_CATEGORIES = CRISIS_CATEGORIES


def normalise(text: str) -> str:
    """Lower case, straight quotes, single spaces: the rules read one spelling of each word."""
    t = (text or "").replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    t = t.replace("\u2013", "-").replace("\u2014", "-")
    return re.sub(r"\s+", " ", t).strip().lower()


def _rx(*parts: str) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in parts]


# Small vocabularies the patterns share.
_I = r"(?:i|i'm|im|i am|i've|ive|i have|i'd|id|i'll|ill|i was|i keep|i just|i really|i honestly)"
_NT = r"(?:n'?t| not)"  # don't / dont / do not
_PILLS = (r"(?:pills?|tablets?|meds|medications?|medicine|paracetamol|acetaminophen|tylenol|ibuprofen|"
          r"aspirin|painkillers?|pain killers?|sleeping (?:pills|tablets)|sleepers|antidepressants?|"
          r"sertraline|citalopram|fluoxetine|zopiclone|diazepam|valium|xanax|benzos?|codeine|"
          r"co-codamol|tramadol|oxy\w*|insulin|lithium|quetiapine|amitriptyline|propranolol|"
          r"prescriptions?|the whole (?:box|packet|pack|bottle|strip))")
_DRINK = r"(?:alcohol|booze|vodka|wine|whisk(?:e)?y|gin|rum|beer|cans|drinks?|drinking|spirits|tequila)"
_PERSON = (r"(?:husband|wife|partner|boyfriend|girlfriend|bf|gf|fianc[eé]e?|ex|spouse|dad|father|mum|mom|"
           r"mother|stepdad|stepfather|step-dad|stepmum|stepmom|step-mum|brother|sister|son|daughter|"
           r"uncle|aunt|grandson|granddaughter|carer|caregiver|landlord|flatmate|roommate|boss|"
           r"mother-in-law|father-in-law|family|parents?|kids?|children|nephew|niece|cousin|other half)")
_VIOLENT = (r"(?:hits?|hitting|beats?|beating|beat up|punch(?:es|ed|ing)?|kick(?:s|ed|ing)?|chok(?:es|ed|ing)|"
            r"slap(?:s|ped|ping)?|push(?:es|ed)?|shov(?:es|ed|ing)|strangl(?:es|ed|ing)|throttl(?:es|ed)|"
            r"burn(?:s|ed|t)|grab(?:s|bed)?|drag(?:s|ged)|throws? things at|threw things at|bit|bites|"
            r"hurts?|hurting|rap(?:es|ed)|molest(?:s|ed)?|touch(?:es|ed)|forc(?:es|ed)|spat on|spits on|"
            r"pinn(?:ed|s)|pin|smack(?:s|ed)?|batter(?:s|ed)|attack(?:s|ed)|threaten(?:s|ed)|locks?|locked|"
            r"shak(?:es|ing)|shook|twist(?:s|ed))")

_PATTERNS: dict[str, list[re.Pattern[str]]] = {
    "suicidal_ideation": _rx(
        r"\bsuicid(?:e|al|ality)\b(?! squad)",
        r"\b(?:kill|killing|off|offing|top|topping|end|ending) myself\b",
        r"\bkms\b|\bunalive\b",
        rf"\b(?:end(?:ing)?|take|taking|finish(?:ing)?) (?:my (?:own )?life|it all|everything)\b",
        r"\bend(?:ing)? (?:it|things)\b(?! with\b)(?=.{0,40}\b(?:tonight|for good|soon|today|now|pills|bridge|rope|"
        r"anymore|plan|decided|ready)\b)",
        r"\b(?:how|ways?|best way|easiest way|quickest way|painless way) (?:to|of) (?:die|dying|end it|do it painlessly)\b",
        rf"\b{_I} (?:\w+ ){{0,3}}(?:want|wanna|wanted|wish|wished|would like|hope|ready|going|plan(?:ning)?|decided) "
        r"(?:\w+ ){0,2}(?:to )?(?:die|be dead|not exist|stop existing|disappear (?:forever|for good|permanently))\b",
        rf"\bwish (?:i|that i) (?:was|were|could be) (?:dead|gone|never born|not here|not alive)\b",
        r"\bwish (?:i|i'?d) (?:had |could have |would have )?(?:never been born|died)\b",
        rf"\b(?:do{_NT}|did{_NT}|no longer|never) (?:really )?(?:want|wanna|wish) to (?:live|be alive|be here|exist|"
        r"wake up|go on|carry on|keep going|keep living|be around)\b",
        rf"\b(?:hope|hoping|pray|praying|wish) (?:that )?i (?:do{_NT}|won'?t|will not|never) wake up\b",
        r"\b(?:go to sleep|fall asleep|fell asleep|sleep|slept|asleep)\b.{0,12}\b(?:never|not|didn'?t|don'?t|wouldn'?t) (?:wake|woke|waking)\b",
        r"\b(?:sleep|asleep|go to sleep|rest) (?:forever|for good|permanently|and not come back)\b",
        r"\b(?:better off|happier|easier|lighter|freer|relieved)\b.{0,40}\b(?:without me|if i (?:was|were|wasn'?t|"
        r"weren'?t|was not|were not|am not|died|disappeared|left for good)|with me gone|once i'?m gone|"
        r"when i'?m gone|if i'?m gone)\b",
        r"\bbetter off (?:dead|gone)\b",
        r"\b(?:no|any) (?:reason|point|purpose) (?:to|in|of) (?:live|living|go(?:ing)? on|being (?:here|alive)|"
        r"carry(?:ing)? on|keep(?:ing)? going|stay(?:ing)? alive|any of (?:this|it)|wak(?:e|ing) up)\b",
        r"\bwhat'?s the point (?:of|in) (?:going on|living|life|being alive|being here|any of it|carrying on|"
        r"waking up|staying)\b",
        rf"\b(?:can{_NT}|cannot) (?:go on|do this anymore|keep going|carry on|take (?:it|this|much more) anymore)\b"
        r"(?! with)",
        r"\b(?:tired|sick) of (?:living|being alive|life|existing)\b",
        r"\b(?:pills|tablets|rope|gun|noose|blade|razor|belt|bottle)\b.{0,40}\b(?:saved|ready|stockpiled|hidden|"
        r"hoarded|collected|set aside|put aside|picked out)\b",
        r"\b(?:saved|stockpil\w+|hoard\w+|collect\w+|saving) (?:up )?(?:\w+ )?(?:pills|tablets|meds|medication)\b",
        r"\bnoose\b|\bhang(?:ing)? myself\b|\bslit(?:ting)? my wrists?\b",
        r"\b(?:wrote|writing|written|left|leave|drafted|drafting) (?:a |my )?(?:suicide |goodbye |farewell |final )?"
        r"(?:notes?|letters?)\b.{0,40}\b(?:for|to) (?:my|the|everyone|everybody|them)\b",
        r"\b(?:goodbye|farewell) (?:notes?|letters?|messages?)\b",
        r"\bsay(?:ing|s)? (?:my )?(?:goodbyes?|goodbye to)\b(?=.{0,60}\b(?:everyone|for good|final|before|last|"
        r"forever|won'?t see)\b)|\bsay(?:ing)? (?:my )?(?:final|last) goodbyes?\b",
        r"\bgiv(?:e|ing|en) (?:away )?(?:some of |all of )?my (?:things|stuff|belongings|possessions|cat|dog|"
        r"clothes|books|games)\b.{0,12}\baway\b|\bgiv(?:e|ing|en) away (?:all )?my (?:things|stuff|belongings|"
        r"possessions)\b",
        r"\bthoughts? (?:of|about) (?:dying|death|ending (?:it|my life)|not being here|killing)\b",
        r"\bnot (?:be|being) (?:here|around|alive) (?:anymore|much longer|for much longer|by|next|soon|after)\b",
        r"\bwon'?t be (?:here|around|a (?:burden|problem)) (?:much longer|for long|anymore|soon|next|by)\b",
        r"\b(?:a |such a )?burden (?:to|on) (?:everyone|everybody|my|them|all)\b.{0,60}\b(?:gone|go away|"
        r"disappear|not (?:be )?here|much longer|end|without me)\b",
        r"\b(?:jump(?:ing)?|leap(?:ing)?|throw(?:ing)? myself|step(?:ping)?|fall(?:ing)?) (?:off|from|in front of|"
        r"into|onto) (?:the|a|that|my) (?:bridge|cliff|roof|building|balcony|train|tracks|platform|bus|lorry|truck|"
        r"traffic|car|river|sea|motorway|highway|car park|multi-?storey)\b",
        r"\b(?:the|that) bridge\b.{0,60}\b(?:jump|end|tonight|looking down|over the edge|railing|for good)\b",
        r"\b(?:walk|walking|step|stepping|swim|swimming) (?:out )?into (?:the )?(?:sea|river|lake|traffic|ocean|water)"
        r"\b(?=.{0,40}\b(?:and not|never|keep going|for good|not come back|until)\b)",
        r"\bcheck(?:ed|ing|s)? out\b.{0,20}\b(?:for good|permanently|early|of (?:life|this world)|of here for good)\b",
        r"\b(?:permanent|final) (?:solution|way out|sleep|exit|goodbye|decision)\b",
        r"\b(?:only|one|easy) way out\b|\bway out of (?:this life|everything|it all)\b",
        r"\bdisappear (?:forever|for good|permanently)\b|\bjust (?:vanish|disappear) and never\b",
        r"\b(?:join|be with) (?:my )?(?:late|dead|passed)\b",
        r"\bnot (?:wake|waking) up (?:tomorrow|again|in the morning)\b|\bnever (?:wake|waking) up again\b",
        r"\bnobody would (?:miss|notice|care if) (?:me|i)\b|\bno one would (?:miss|notice|care if) (?:me|i)\b",
        r"\b(?:set|picked|chosen|chose) (?:a|the) date\b|\bmade (?:a|my) plan to\b.{0,30}\b(?:die|end|go)\b",
        r"\b(?:life|living) (?:is|isn'?t|feels) (?:not )?worth (?:it|living)\b|\bnot worth living\b|"
        r"\bworth more dead\b",
        r"\b(?:get|getting|put) (?:it|this|everything) over with\b(?=.{0,40}\b(?:for good|tonight|pills|life)\b)",
    ),
    "self_harm": _rx(
        r"\bself[\s-]?(?:harm\w*|injur\w*|mutilat\w*)\b|\bsh\b(?= (?:again|urges?|relapse))",
        r"\b(?:cut|cutting|cuts|burn|burning|burnt|burned|hurt|hurting|harm|harming|scratch|scratching|scratched|"
        r"hit|hitting|punch|punching|punched|bang|banging|bite|biting|bit|punish|punishing|pinch|pinching|stab|"
        r"stabbing|carve|carving|carved|bruise|bruising|starve|starving|starved|slap|slapping|pull out|pulling out)"
        r" myself\b",
        r"\b(?:cut|cutting|cuts|burn|burning|burnt|burned|scratch\w*|carv\w*|slic\w*|gouge\w*|pick\w*|scald\w*|"
        r"dig\w*|press\w*)\s+(?:\w+ ){0,5}?(?:my|on my|into my|onto my|against my)\s+(?:\w+ )?(?:arms?|wrists?|legs?|"
        r"thighs?|skin|stomach|hips?|hands?|ankles?|body|face|forearms?|chest|fingers?)\b(?!.{0,40}\b(?:by accident|"
        r"accidentally|cooking|chopping|slicing|on the oven|on the stove|ironing|badly chopping|gardening|fell|"
        r"tripped|slipped)\b)(?<!\bcut my hand)",
        r"\b(?:head|fists?) (?:against|into) (?:the|a) (?:wall|door|floor)\b",
        r"\b(?:razor|blade|lighter|compass|scissors|glass|knife)\b.{0,40}\b(?:my (?:skin|arms?|wrists?|legs?|"
        r"thighs?)|on myself|to myself|against my)\b",
        r"\brelaps\w*\b.{0,40}\b(?:cut|cutting|harm|burn|scratch)\w*|\b(?:cut|cutting|harm|burn)\w*\b.{0,30}\b"
        r"(?:relaps\w*|again)\b",
        r"\b(?:stopped|not|haven'?t|won'?t|refuse to|refusing to|can'?t let myself) eat(?:ing|en)?\b.{0,40}\b"
        r"(?:on purpose|to punish|deserve|as punishment|days)\b",
        r"\b(?:deserve|deserved) (?:the |to feel )?(?:pain|to hurt|to bleed|to suffer)\b",
        r"\b(?:until|till|til) (?:it|they|i) (?:bleed|bled|bleeds|bruise|bruised)\b",
        r"\b(?:urge|urges|need|needing) to (?:cut|hurt myself|burn|harm myself|feel pain|see blood)\b",
        r"\b(?:fresh|new) (?:cuts|scars|burns|wounds)\b",
    ),
    "abuse": _rx(
        rf"\b(?:he|she|they|my {_PERSON}(?: \w+)?)(?: \w+){{0,3}}? {_VIOLENT}\b(?: \w+){{0,2}}? (?:me|us|my kids|"
        r"my children|my baby|my face|my arm|my neck|my head)\b",
        r"\bpush(?:es|ed)? me (?:around|into|down|against|over|out)\b",
        r"\b(?:domestic|physical|sexual|emotional|verbal|financial|elder|child|psychological) (?:abuse|violence)\b",
        r"\babus(?:e|es|ed|ive|ing) (?:me|us|my)\b|\b(?:is|was|being|been|get|getting) abus(?:ed|ive)\b|"
        r"\babusive (?:husband|wife|partner|boyfriend|girlfriend|relationship|marriage|home|parent|dad|mum|mom)\b",
        r"\bthreaten(?:s|ed|ing)? (?:me|to (?:kill|hurt|harm|take|leave) (?:me|my|the kids)|my life)\b",
        r"\b(?:kill|hurt|harm) me if i\b|\bsaid (?:he|she|they)'?d? (?:kill|hurt|harm) me\b",
        r"\bsaid next time (?:he|she|they)'?d?\b",
        r"\b(?:takes?|took|keeps?|kept|controls?|controlled|checks?|hides?|hid|withholds?|withheld) (?:all )?(?:of )?"
        r"my (?:money|pension|benefits|wages|salary|bank cards?|cards|phone|passport|keys|car keys|medication|"
        r"savings|id|documents)\b",
        rf"\b(?:won'?t|doesn'?t|does not|will not|never) (?:let|allow) me (?:to )?(?:leave|go out|go outside|see|"
        r"have|use|talk|speak|call|visit|work|eat|sleep|out of)\b",
        rf"\b(?:locks?|locked|lock) me (?:in|out|up)\b",
        rf"\b(?:afraid|scared|terrified|frightened) (?:of|for) my (?:life|safety)\b|\b(?:afraid|scared|terrified|"
        rf"frightened) (?:of|to go home to|to be home with|to be alone with) (?:him|her|them|my {_PERSON})\b",
        r"\b(?:scared|afraid|terrified) (?:to go home|of going home|he'?ll|she'?ll|they'?ll)\b",
        r"\b(?:bruises|black eye|marks) (?:he|she|they) (?:left|gave)\b|\bhid(?:e|ing)? the bruises\b",
        r"\b(?:makes?|made|forc(?:es|ed)) me (?:have sex|do (?:sexual|things i don'?t want))\b",
        r"\b(?:touches|touched|touching) me (?:when|where|at night|in ways)\b",
        r"\bwalk(?:ing)? on eggshells\b.{0,80}\b(?:hit|hurt|angry|temper|rage|scared)\b",
    ),
    "harm_to_others": _rx(
        r"\b(?:want|wanna|wanted|going|gonna|plan|planning|plans|urge|urges|thinking about|thought about|"
        r"picturing|imagine|imagining|fantasi[sz]\w* about|tempted|close|ready|about|mean|means|intend|intending) "
        r"(?:to )?(?:really )?(?:kill|killing|hurt|hurting|shoot|shooting|stab|stabbing|shake|shaking|hit|hitting|"
        r"harm|harming|strangle|strangling|smother|smothering|poison|poisoning|attack|attacking|beat|beating|"
        r"run over|punch|punching|drown|drowning|choke|choking) "
        r"(?:him|her|them|someone|somebody|people|everyone|anybody|anyone|my|the|that|this|those|these|a|his|her)\b",
        r"\b(?:kill|hurt|shoot|stab|harm|strangle|smother|poison) (?:him|her|them|someone|my \w+)\b"
        r"(?=.{0,40}\b(?:badly|tonight|tomorrow|for real|i mean it|before|if (?:he|she|they))\b)",
        r"\b(?:afraid|scared|terrified|worried) (?:that )?i(?:'ll| will| might| could| am going to|'m going to) "
        r"(?:\w+ )?(?:hurt|harm|kill|shake|smother|drop|hit|snap and hurt|lose it with) (?:my|the|him|her|them|someone)\b",
        r"\b(?:who|they|he|she) (?:deserves?|deserve) to (?:pay|die|suffer|be hurt)\b|\bmak(?:e|ing) (?:him|her|them) "
        r"(?:pay|suffer|regret)\b",
        r"\b(?:bring(?:ing)?|take|taking|carry(?:ing)?) (?:my|a|the) (?:gun|knife|weapon|blade|bat|rifle)\b.{0,30}"
        r"\b(?:to (?:work|school|class|college|the office|his|her|their)|with me)\b",
        r"\b(?:bought|buying|got|get|have|own) (?:a|the|my) (?:gun|bat|knife|weapon|rifle|crossbow)\b(?=.{0,60}"
        r"\b(?:him|her|them|for|when|if|ready)\b)",
        r"\burges? to (?:shake|hit|hurt|harm|strangle|attack|kill|stab|smother)\b",
        r"\b(?:snap|lose it) and (?:hurt|kill|hit|attack)\b",
        r"\bthoughts? (?:of|about) (?:hurting|harming|killing|stabbing|drowning|smothering) (?:my|him|her|them|"
        r"someone|the)\b",
    ),
    "acute_psychosis": _rx(
        r"\bvoices?\b.{0,30}\b(?:say|says|said|tell|tells|telling|told|command\w*|order\w*|want|wants|keep|keeps|"
        r"won'?t stop|getting louder|in my head)\b",
        r"\bhear(?:ing)? (?:voices|things that aren'?t there|people (?:talking|whispering) when)\b",
        r"\b(?:chip|tracker|camera|device|implant|microphone|transmitter|wire)s? (?:\w+ )?(?:in|into|inside) my "
        r"(?:tooth|teeth|head|brain|body|skull|arm|ear|neck)\b",
        r"\b(?:they|people|neighbou?rs|the government|someone|everyone|strangers|the police|mi5|the cia|the fbi)"
        r" (?:are |is )?(?:\w+ )?(?:watching|following|tracking|poisoning|spying on|monitoring|controlling|"
        r"reading|after|out to get|plotting against|coming for) (?:me|my (?:thoughts|mind|food|water|flat|house))\b",
        r"\b(?:can|could) (?:hear|read|see|steal) my (?:thoughts|mind)\b|\bmy thoughts (?:are )?(?:being )?"
        r"(?:broadcast|stolen|taken|inserted|put|read|heard|on the radio|on tv)\b|\bputting thoughts in my head\b",
        r"\b(?:the )?(?:tv|television|radio|news|telly|adverts?|billboards?|god|the devil|satan|angels|demons)\b"
        r".{0,30}\b(?:talking|speaking|sending|speaks|talks|messages|signals) (?:to me|me|just for me|directly)\b",
        r"\bsending me (?:coded |secret |hidden )?(?:orders|messages|signals|instructions)\b",
        r"\b(?:living|hiding|people) (?:inside|in) the walls\b",
        r"\b(?:i'?m|i am) being (?:poisoned|watched|followed|controlled|tracked|monitored|hunted|programmed)\b",
        r"\b(?:nothing|none of this|no one|nobody|the world|everyone|people) (?:is|are|feels?) (?:real|fake|"
        r"actors|robots|replaced|impostors|imposters)\b(?=.{0,80}\b(?:i|me|my)\b)",
        r"\b(?:replaced|swapped) (?:by|with) (?:an? )?(?:impostor|imposter|double|clone|robot)\b",
        r"\b(?:chosen|sent) (?:by god )?(?:to|on a mission|for a mission)\b.{0,40}\b(?:save|destroy|cleanse|"
        r"punish|kill)\b|\bspecial mission\b",
        r"\b(?:hallucinat\w*|delusion\w*|psychotic|psychosis)\b",
        r"\bhaven'?t slept (?:in|for) (?:\w+ )?days\b.{0,60}\b(?:god|mission|messages|signs|powers|chosen)\b",
    ),
    "medical_emergency": _rx(
        r"\bchest (?:pain|pains|is tight|feels tight|tightness|hurts|pressure|is crushing|is heavy|is on fire)\b|"
        r"\b(?:pain|tightness|pressure) in my chest\b",
        rf"\b(?:can{_NT}|cannot|can barely|struggling to|hard to|unable to|trouble) (?:breathe|breathing|catch my "
        r"breath|get air|swallow)\b",
        r"\b(?:having|had|think i'?m having|i think i had|just had) (?:a |another )?(?:seizure|fit|heart attack|"
        r"stroke|convulsion|anaphylactic)\b|\bseizures?\b(?! (?:medication|meds|disorder) (?:review|appointment))",
        r"\b(?:numb|numbness|weak|weakness|tingling|drooping|droopy)\b.{0,30}\b(?:one side|left side|right side|"
        r"left arm|right arm|face|half my)\b|\bslurr\w* (?:my )?(?:words|speech)\b",
        r"\b(?:bleeding|blood)\b.{0,30}\b(?:won'?t stop|heavily|a lot|everywhere|through|soaking|can'?t stop|"
        r"pouring|spurting|keeps coming)\b|\bcan'?t stop the bleeding\b|\blost a lot of blood\b",
        r"\b(?:passed out|passing out|fainted|fainting|blacked out|blacking out|losing consciousness|keep "
        r"collapsing|collapsed|about to pass out|going to pass out)\b(?=.{0,60}\b(?:now|again|today|just|keep|"
        r"minutes|hours|hit my head|floor|can'?t)\b)",
        r"\b(?:blood sugar|hypo|hyper|glucose|ketones?|dka)\b.{0,40}\b(?:low|high|shaking|confused|won'?t|can'?t|"
        r"dropping|crashing|\d+)\b",
        r"\b(?:swallowed|drank|drunk|ate|took|taken|inhaled) (?:some )?(?:bleach|poison|antifreeze|drain cleaner|"
        r"weed ?killer|rat poison|something (?:toxic|poisonous|i shouldn'?t|bad)|cleaning (?:fluid|products?)|"
        r"batteries|a battery)\b",
        r"\b(?:throat|tongue|lips?|face) (?:is |are |feels )?(?:swelling|swollen|closing|closing up|going numb|"
        r"turning blue|blue)\b|\banaphyla\w*\b|\ballergic reaction\b",
        r"\b(?:hit|banged|cracked) my head\b.{0,40}\b(?:vomit\w*|throw(?:ing)? up|dizzy|confused|blood|passed out|"
        r"can'?t see)\b|\bconcussion\b",
        r"\b(?:vomiting|throwing up|coughing up|peeing|pooing) blood\b|\bblood in my (?:vomit|sick)\b",
        r"\b(?:heart|pulse) (?:is )?(?:racing|pounding|beating)\b.{0,40}\b(?:won'?t (?:slow|stop)|for (?:hours|ages)|"
        r"200|can'?t breathe|chest|faint|dizzy)\b",
        r"\b(?:broken|broke) my\b.{0,20}\b(?:bone|leg|arm|neck|back|hip)\b.{0,30}\b(?:can'?t|sticking|out)\b|"
        r"\bbone (?:is )?sticking out\b",
        r"\b(?:burn|burns|burnt|burned|scalded)\b.{0,30}\b(?:blistering|skin (?:is )?peeling|charred|huge|all over)\b",
        r"\b(?:fever|temperature)\b.{0,30}\b(?:40|41|104|105|stiff neck|rash that|won'?t come down)\b",
        r"\b(?:my )?(?:waters?|contractions?)\b.{0,40}\b(?:broke|bleeding|weeks early|can'?t)\b",
    ),
    "substance_overdose": _rx(
        r"\bover[- ]?dos(?:e|ed|es|ing)\b|\bod(?:'?d|ed|ing)?\b(?= (?:on|last|again|tonight|by accident))",
        rf"\b(?:took|taken|take|taking|swallowed|swallow|downed|down|had|necked|popped|pop|ate|eaten|just had) "
        rf"(?:\w+ ){{0,3}}?(?:too many|too much|a lot of|lots of|loads of|heaps of|a handful of|handfuls of|all "
        rf"(?:of )?(?:my|the)|the whole|a whole|a full|the rest of (?:my|the)|double|triple|extra|way more|an "
        rf"entire|\d{{2,}}|ten|twelve|fifteen|twenty|thirty|forty|fifty|a (?:bottle|box|packet|strip|pack|"
        rf"bunch) of)\b(?: \w+){{0,3}}? {_PILLS}",
        rf"\b{_PILLS}\b.{{0,40}}\b(?:with|and|on top of|after|washed down with|plus)\b.{{0,20}}\b{_DRINK}\b",
        rf"\b{_DRINK}\b.{{0,40}}\b(?:with|and|on top of|after|plus)\b.{{0,30}}\b{_PILLS}\b",
        rf"\boverdo(?:ne|ing)? it (?:with|on) (?:my |the )?\w*",
        r"\btoo (?:much|many) (?:of )?(?:my )?(?:insulin|methadone|heroin|fentanyl|ketamine|coke|cocaine|mdma|"
        r"pills|tablets|meds|g|ghb|xanax|painkillers|paracetamol|lean|codeine|speed)\b",
        r"\b(?:mix(?:ed|ing)?|combin(?:ed|ing)) (?:my )?(?:\w+ )?(?:pills|meds|tablets|benzos|xanax|sleeping "
        r"(?:pills|tablets)|oxy\w*|opioids|methadone)\b.{0,30}\b(?:with|and)\b",
        r"\b(?:can'?t|cannot) (?:wake|wake up|rouse)\b.{0,30}\b(?:after|took|pills|drink|drinking|using)\b|"
        r"\bturning blue\b|\blips are blue\b",
        r"\bpoison(?:s)? (?:control|centre|center|information)\b",
    ),
}


#: More wordings, grouped by category (added while tuning on the dev split; general forms only).
_MORE: dict[str, list[re.Pattern[str]]] = {
    "suicidal_ideation": _rx(
        r"\b(?:garage|car)\b.{0,40}\bengine (?:is )?running\b|\bhose ?pipe\b.{0,30}\b(?:exhaust|car)\b|"
        r"\bcarbon monoxide\b|\bcharcoal\b.{0,30}\b(?:room|tent|car|burn)\b",
        r"\b(?:use|using|turn|turning|point|pointing) (?:it|the gun|a gun|the knife|the rope|them) on myself\b",
        r"\b(?:if|when|once|after) i'?m (?:not|no longer) (?:around|here|alive)\b|\b(?:if|when|once|after) i'?m gone\b",
        r"\bwhether i live or die\b|\b(?:don'?t|do not) care (?:if|whether) i (?:live|die|wake)\b",
        r"\b(?:got|bought|have|ordered|found|tied) (?:the|a) (?:rope|noose|hosepipe)\b|\brope\b.{0,40}\b(?:garage|"
        r"loft|beam|tree|waiting|ready|tonight)\b",
        r"\bstop existing\b|\bcease to exist\b|\bnot (?:to )?exist(?:ing)? (?:any ?more|at all)\b|"
        r"\bdon'?t want to be me any ?more\b",
        r"\b(?:updated|wrote|written|made|sorted|finished|finalised|finalized) (?:my|a) will\b|\b(?:none of this|it) "
        r"(?:will|won'?t) (?:be my problem|matter to me)\b",
        r"\b(?:the|my) plan is (?:for|to do it|tonight|tomorrow|set)\b|\bfrom (?:\w+ )?(?:different|several|a few) "
        r"(?:shops|pharmacies|chemists|stores)\b",
        r"\bhow many (?:of )?(?:my |these |the )?(?:\w+ )?(?:pills|tablets|meds|paracetamol|painkillers)\b.{0,30}"
        r"\b(?:take|would take|it takes|to die|to kill|is lethal|are lethal)\b|\b(?:looked up|googled|searched|"
        r"researched|reading about)\b.{0,40}\b(?:lethal|painless|to die|overdose|how long it takes to)\b",
        r"\b(?:passed|died|lost|death|funeral)\b.{0,80}\b(?:join (?:him|her|them)|be with (?:him|her|them) again)\b|"
        r"\bjoin (?:him|her|them|my \w+) (?:soon|in heaven|up there|on the other side)\b",
        r"\b(?:walk|walking|swim|swimming|wade|wading)\b.{0,20}\binto the (?:sea|river|lake|ocean|water|waves|traffic)\b",
        r"\b(?:wish|wishing|hope|hoping|pray|praying)\b.{0,30}\b(?:a car|a bus|a truck|a lorry|a train|something|"
        r"someone|the plane|an accident)\b.{0,25}\b(?:hit|hits|kill|kills|crash|crashes|end|ends) (?:me|it all)\b|"
        r"\bso it (?:would |will |could )?all (?:stop|end|be over)\b",
        r"\b(?:won'?t|will not|wouldn'?t) have to (?:worry about|deal with|put up with|look after|see) me\b",
        r"\b(?:picked|chosen|chose|found|scouted|checked) (?:the|a|my) (?:spot|place|location|method|tide times|"
        r"height)\b",
        r"\bstanding (?:on|at) (?:the )?(?:roof|ledge|edge|bridge|railing|railings|balcony|cliff|cliffs|platform edge)\b",
        r"\b(?:cliffs?|bridge|ledge|railway line|train tracks|tracks)\b.{0,80}\b(?:jump|i'?m going|going (?:on|this)|"
        r"check(?:ed|ing)?|drove|driven|tonight|for good|looking down|over the edge|the drop)\b(?<!cross that bridge)",
        r"\bnot (?:sticking|staying|hanging) around\b|\b(?:won'?t|not going to|not gonna) be (?:here|around) "
        r"(?:to|for|much|by|when|after)\b",
        r"\bi (?:just )?want (?:out|it all to (?:stop|end))\b(?! of\b)|\bwant (?:the|my) life to (?:end|stop|be over)\b",
        r"\b(?:hope|hoping|wish|wishing)\b.{0,40}\b(?:terminal|cancer|don'?t survive|not survive|not make it|die in)\b",
        r"\b(?:if|wish|hope|mind|rather|better|prefer) i (?:just )?(?:didn'?t|did not|never|don'?t|wouldn'?t) "
        r"(?:wake|woke) up\b",
        r"\b(?:guess|suppose) it didn'?t work\b|\b(?:it|that) didn'?t work\b.{0,20}\b(?:pills|took|tried)\b",
        r"\b(?:thank(?:s| you) for everything|this is (?:my )?goodbye|bye (?:forever|everyone)|last message)\b",
        r"\b(?:i'?m|i am) (?:done|finished|ready to go)\b(?=.{0,40}\b(?:with (?:life|living|everything)|for good|"
        r"tonight|goodbye|bye)\b)",
    ),
    "self_harm": _rx(
        r"\b(?:on purpose|deliberately|intentionally|to punish myself|as (?:a )?punishment|punishing myself|to feel "
        r"(?:something|anything|real)|the only way i (?:can )?feel)\b",
        r"\b(?:straighteners?|hair iron|iron|lighter|cigarettes?|hot (?:water|metal|spoon|knife|iron|pan|wax)|"
        r"scalding (?:water|hot))\b.{0,50}\b(?:my|on my|onto my|against my) (?:\w+ )?(?:arms?|wrists?|thighs?|"
        r"legs?|skin|hands?|stomach|chest)\b",
        r"\brazor blades?\b|\bblades?\b.{0,40}\burges?\b|\burges?\b.{0,40}\bblades?\b",
        r"\b(?:deserve|deserved) (?:it|this|to feel|that|to be hungry|to starve|the pain)\b.{0,60}\b(?:eat|food|"
        r"meals?|water|starv\w*|hungry|empty|pain|hurt)\b|\b(?:eat|food|meals?|water|starv\w*|hungry|empty|"
        r"days)\b.{0,80}\b(?:what i deserve|i deserve (?:it|this|that))\b",
        r"\b(?:skip|skipping|skipped) (?:\w+ )?meals?\b.{0,40}\b(?:on purpose|punish\w*|deserve)\b",
        r"\b(?:banged|banging|hit|hitting|smashed|smashing) my (?:head|fists?|hands?) (?:against|on|into) (?:the|a)\b"
        r"(?=.{0,60}\b(?:over and over|until|again|on purpose|angry|hurt|stars|bleed)\b)",
        r"\b(?:punch|punching|punched|hit|hitting|slap|slapping|pinch|pinching|bruise|bruising) my (?:own )?(?:legs?|"
        r"arms?|thighs?|stomach|face|head|body)\b(?=.{0,60}\b(?:until|purple|bruise|bleed|on purpose|again|angry|"
        r"punish|hate|deserve|today|every)\b)",
    ),
    "abuse": _rx(
        rf"\b(?:he|she|they|my {_PERSON})\b.{{0,60}}?\b(?:touches|touched|touching|grabs|grabbing|grabbed|hits|"
        r"hitting|punches|punching|kicks|kicking|chokes|choking|slaps|slapping|hurts|hurting) me\b",
        r"\bkeeps? (?:grabbing|hitting|touching|hurting|punching|kicking|slapping|pushing|threatening|choking|"
        r"strangling|following|cornering|groping) me\b",
        r"\b(?:taken|took|takes) (?:over )?(?:all )?(?:of )?my (?:savings|money|pension|bank|accounts?|house|home|"
        r"finances)\b|\b(?:for|ask for|asking for|want) my own money\b",
        r"\b(?:makes?|making|made|forces?|forcing|forced) me (?:to )?(?:do (?:stuff|things)|have sex|watch|touch|"
        r"send)\b",
        r"\b(?:no ?one|nobody) (?:will|would|is going to) believe me\b|\bif i tell (?:anyone|anybody|someone|"
        r"the police|my)\b",
        r"\b(?:comes|came|coming) into my (?:room|bed|bedroom)\b(?=.{0,40}\b(?:night|touch|when)\b)",
    ),
    "harm_to_others": _rx(
        r"\b(?:plan|planning|planned|worked out|figured out) (?:how|what) (?:to|i'?ll|i'?d|i'?m going to) "
        r"(?:do to|hurt|get|wreck|attack|deal with)\b|\bgot (?:his|her|their) routine\b",
        r"\b(?:going to|gonna|will) (?:regret it|pay for (?:it|this|what))\b|\b(?:know|found out) where (?:\w+ ){0,3}"
        r"keeps? (?:his|her|their|the) (?:guns?|rifles?|shotguns?|knives)\b",
        r"\b(?:going|go|gonna|coming|went) (?:round|over|around) (?:there )?(?:\w+ ){0,3}with (?:a|my|the) "
        r"(?:hammer|knife|bat|gun|crowbar|machete|axe|blade)\b",
        r"\bnearly (?:stabbed|hit|killed|strangled|hurt|punched|choked|smothered|threw|shook|drowned) (?:him|her|"
        r"them|my|someone|the)\b|\bdon'?t trust myself (?:around|with|near)\b",
        r"\b(?:started|been|keep|kept) (?:shaking|hitting|slapping|hurting|smacking|grabbing) (?:him|her|them|my)\b",
        r"\bsharpen(?:ing|ed)? (?:a|my|the) (?:knife|blade|machete|axe)\b|\bwhat i'?d do to (?:him|her|them|the)\b",
        r"\b(?:scared|afraid|worried|terrified) (?:that )?i'?(?:ll| will| might) (?:do it|lose it) again\b",
        r"\b(?:have to|need to|must|going to|gonna) (?:deal with|get rid of|take care of|stop|sort out|punish) "
        r"(?:him|her|them)\b(?=.{0,40}\b(?:before|tonight|demon|evil|for good|forever)\b)",
    ),
    "acute_psychosis": _rx(
        r"\b(?:cameras?|microphones?|bugs?|devices?|chips?|wires?)\b.{0,15}\bin (?:the|my) (?:smoke alarms?|walls?|"
        r"lights?|ceiling|vents?|fillings|teeth|tooth|head|brain|phone|tv|mirror)\b",
        r"\b(?:listen\w*|watch\w*|spy\w*|talk\w*|spying) (?:to me |on me )?through (?:my|the) (?:fillings|teeth|walls|"
        r"tv|vents|sockets|phone|radio|mirror|ceiling)\b",
        r"\b(?:trying to |want to |going to |to )?poison(?:ing)? me\b|\bgas through the vents\b",
        r"\b(?:thoughts?) (?:out of|into|from) my (?:head|mind|brain)\b|\beveryone'?s in on it\b|\b(?:swapped|replaced) "
        r"me\b",
        r"\bwalls (?:are |were )?(?:breathing|moving|melting|talking|whispering)\b|\b(?:bugs|insects|things|worms) "
        r"(?:\w+ )?(?:under|crawling under|in|beneath) my skin\b|\bcan'?t tell what'?s real\b",
        r"\b(?:talking|talk|whispering) about me in code\b|\bin code\b.{0,30}\b(?:me|for me)\b|\b(?:number plates|"
        r"licen[cs]e plates|signs|numbers|adverts|songs|colours|colors) (?:are|were) (?:instructions|messages|signs|"
        r"signals|orders|meant for me|about me)\b|\bor my (?:mum|mom|family|dad|kids?|children) (?:dies|will die)\b",
    ),
    "medical_emergency": _rx(
        r"\b(?:my )?sugar(?:s| levels?| readings?)? (?:is |are |was |were )?(?:very |really |dangerously )?(?:low|high|dropping|crashing)\b",
        r"\bchest\b.{0,30}\b(?:crush\w*|tight\w*|squeez\w*|heavy|pressure)\b|\bpain (?:is )?(?:going |spreading |"
        r"running |shooting )?(?:down|into|up) my (?:left )?(?:arm|jaw|neck)\b",
        r"\bworst headache\b|\bthunderclap\b|\bstiff neck\b|\bneck is stiff\b",
        r"\bpregnant\b.{0,60}\b(?:bleeding|blood|severe pain|cramps|kicked|fell|contractions)\b|\b(?:bleeding|blood)"
        r"\b.{0,60}\bpregnant\b",
        r"\bbreathing (?:is |feels |seems )?(?:really |very )?(?:slow|shallow|weird|funny|rattly)\b|\bcan'?t keep my "
        r"eyes open\b",
        r"\b(?:seeing double|double vision)\b|\b(?:throwing up|vomiting)\b.{0,30}\b(?:hit my head|head injury|fell)\b",
        r"\b(?:hit|banged) my head\b(?=.{0,60}\b(?:throwing up|vomit\w*|seeing double|dizzy|confused|blood|hard)\b)",
    ),
    "substance_overdose": _rx(
        rf"\b{_DRINK}\b.{{0,40}}\b(?:then|before|as well as|along with)\b.{{0,30}}\b{_PILLS}\b",
        r"\b(?:took|taken|had|used|done|did|drank|smoked|snorted) (?:way |a lot |much |loads )?more than i "
        r"(?:should|meant|was supposed|normally)\b",
        r"\b(?:double|triple)[- ]?dos(?:ed|e|ing)\b|\b(?:took|taken|had) (?:my |all my )?(?:\w+ )?(?:meds|"
        r"medication|medicine|tablets|pills|dose|insulin) (?:twice|two times|three times|again by mistake)\b",
        r"\blips\b.{0,20}\bblue\b|\bnodding off\b",
        rf"\b(?:took|taken|swallowed|downed|had|ate|necked|popped) (?:\w+ )?(?:whole |full |entire )?(?:packs?|"
        rf"packets?|boxes|box|bottles?|strips?|blister packs?|tubs?) of\b|\b(?:swallowed|took|taken|downed) "
        rf"(?:every|all (?:the|my|of my)) (?:pill|tablet|med)s?\b",
        r"\b(?:took|taken|swallowed|had) (?:a load of|a bunch of|a heap of|a pile of|a fistful of|a stack of)\b",
    ),
}
for _cat, _extra in _MORE.items():
    _PATTERNS[_cat].extend(_extra)


#: Wordings found missing on the second dev split (``dev2``): finality, means with a plan, injury cues.
_MEANS = (r"(?:pills|tablets|paracetamol|insulin|morphine|patches|rat poison|poison|rope|belt|noose|hose(?:pipe)?|"
          r"gun|knife|blades?|bridge|roof|ledge|cliffs?|quarry|multi-?storey|car park|top level|platform|the tracks|"
          r"train|express|tide|river|lake|the sea|heights|motorway|everything i need|the lot|my meds)")
_PLAN = (r"(?:tonight|tomorrow night|this weekend|after (?:my shift|everyone|she|he|they|mum|dad|tonight|her|his)|"
         r"when (?:everyone|the house|she|he|they|mum|dad|my \w+) (?:is|are|goes|leaves|will|sleeps|goes out)|once "
         r"everyone|on the \d+|on (?:sunday|saturday|friday|thursday)|decided|lined up|counted|enough|working up|"
         r"practis\w*|rehears\w*|checking the timetable|which one|what time|seals properly|nobody knows|bringing "
         r"everything|(?:waiting|wait) (?:for|until|til)|after (?:her|his|the) birthday|look at it properly|driven "
         r"(?:up )?there|been looking at|ready)")
_MORE2: dict[str, list[re.Pattern[str]]] = {
    "suicidal_ideation": _rx(
        r"\b(?:won'?t|wont|will not|never) (?:hear from me|see me|need me|need my \w+(?: \w+)?|be at (?:\w+ )?"
        r"(?:session|work|school)|be needing)\b|\bwill(?:n'?t)? need me after\b",
        r"\b(?:none of (?:it|this)|nothing) (?:will|would|is going to) matter\b|\bnot (?:walking|coming) back\b|"
        r"\b(?:log(?:ging)? off|signing off|gone) for good\b|\bthe \d+(?:st|nd|rd|th)? is the day\b",
        r"\b(?:by the time|before) (?:they|anyone|she|he|you) (?:open|read|find|see|get)\w*\b.{0,40}\b(?:done|gone|dead|"
        r"over|it)\b",
        r"\b(?:it|this) (?:wasn'?t|was not|isn'?t) (?:her|his|your|their|anyone'?s) fault\b.{0,80}\b(?:won'?t|any of|"
        r"after|goodbye)\b|\blast (?:cigarette|cup of tea|look|shift|message|sunset)\b",
        r"\b(?:tell|let) (?:my \w+|\w+) (?:i love (?:her|him|them)|that i love|it wasn'?t)\b|\bdelete my (?:account|"
        r"messages|profile)\b|\bstar in the sky\b|\b(?:go|going) (?:to )?see (?:him|her|them) soon\b",
        r"\b(?:took|take) me (?:tonight|soon|in my sleep)\b|\bhad my innings\b|\bworking up to it\b|\bgo(?:ing)? through "
        r"with it\b|\bnext time i (?:don'?t|won'?t) (?:think i'?ll )?stop\b",
        r"\b(?:permanent|forever|long) (?:nap|sleep|rest)\b|\bthe kind (?:you|u) (?:don'?t|dont) wake up from\b|"
        r"\blong walk\b(?=.{0,40}\b(?:tonight|tide|sea|beach|nobody|river)\b)",
        r"\b(?:yeet|throw|fling|launch|chuck|hurl) myself (?:off|from|in front|into|under)\b|\b(?:turn|switch) myself "
        r"off\b|\bsewer ?slide\b|\bctb\b|\bunaliv\w*\b",
        r"\bif i die,? i die\b|\b(?:don'?t|dont) care what happens\b|\b(?:don'?t|dont) care if i (?:crash|die|get hit|"
        r"don'?t make it)\b|\b(?:wouldn'?t|would not) mind (?:at all )?if (?:the lord|god|death|i) (?:took|take|died|"
        r"came)\b|\b(?:no longer|don'?t|do not) care (?:whether|if) i (?:see|wake|live|make)\b",
        r"\bhop(?:e|ing) (?:\w+ ){0,3}(?:doesn'?t|does not|won'?t|wont|didn'?t) stop in time\b|\bpart of me wanted "
        r"(?:it|the plane|the car|to die) to (?:go down|crash|happen)?|\bwanted it to go down\b",
        r"\b(?:praying|hoping|wish\w*) for (?:a|an|some) (?:\w+ )?(?:diagnosis|accident|illness|crash|cancer)\b|"
        r"\bturns? into something (?:serious|fatal)\b|\b(?:don'?t|dont) have to keep doing life\b",
        r"\bbetter (?:life|lives|time|future) without me\b|\bi'?d (?:rather|prefer) not (?:be here|exist|be alive|"
        r"wake up)\b|\bready to be done\b|\bdone done\b",
        r"\b(?:slip|step|fall)\b.{0,30}\b(?:yellow line|platform edge|the tracks)\b|\byellow line\b.{0,40}\b(?:slip|"
        r"step|fall|jump|easy)\b|\bwithout (?:my|a) seatbelt\b",
        r"\b(?:hope|hoping|pray|praying|wish)\b.{0,30}\bi (?:just )?(?:won'?t|will not|never|don'?t) wake up\b|"
        r"\bstop(?:ped|s)? existing\b|\bi (?:would|'?d) (?:rather|prefer) not (?:be here|exist|be alive|wake up)\b|"
        r"\bmake it (?:all )?stop (?:permanently|for good|forever)\b|\bmy own funeral\b",
        r"\bnot doing chemo\b|\beasiest way out\b|\b(?:just )?let it happen\b(?=.{0,60}\b(?:easiest|way out|die|end)\b)",
        rf"\b{_MEANS}\b.{{0,80}}\b{_PLAN}\b|\b{_PLAN}\b.{{0,80}}\b{_MEANS}\b",
        r"\ball of us\b.{0,30}\b(?:lake|river|car|sea)\b|\btaking the kids with me\b",
    ),
    "self_harm": _rx(
        r"\bsh'?(?:d|ing)\b|\bit wasn'?t the cat\b|\bfound the cuts\b|\blines on my (?:arm|leg|thigh|wrist)s?\b",
        r"\b(?:using|used|did|doing) (?:it|the blade|the glass|a blade|the razor|the bits?) (?:on|in) (?:my|the "
        r"toilets|the bathroom)\b",
        r"\b(?:hoodie|long sleeves|sleeves)\b.{0,60}\b(?:arms?|marks|scars|cuts|legs?|no one sees|nobody sees)\b",
        r"\b(?:bit|bite|biting) my (?:\w+ )?(?:hand|arm|forearm|lip|fingers?|wrist)\b.{0,50}\b(?:bled|bleed|bruis\w*|"
        r"marks|hard)\b",
        r"\b(?:ordered|bought|buying|got) (?:\w+ )?blades\b|\bblades?\b.{0,40}\b(?:online|coming|kit|pencil case|in my "
        r"hand|out of (?:my|the))\b|\bkit\b.{0,50}\bblades\b|\bsnapped a sharpener\b|\bblade out\b",
        r"\b(?:was |been )?\w+ (?:days|weeks|months|years) clean\b.{0,60}\b(?:relaps\w*|again|tonight|razor|blade)\b|"
        r"\bsince i last did it\b.{0,60}\b(?:tonight|want to|urge)\b",
        r"\bpunch(?:ed|ing)? (?:the|a) (?:\w+ )?(?:wall|door|mirror)\b.{0,40}\b(?:until|knuckles|bled|bleed|split|"
        r"broke)\b|\bknuckles (?:split|bleeding)\b",
        r"\bpull(?:ing|ed)? (?:out )?(?:my |most of my )?(?:hair|eyelashes|eyebrows)\b.{0,80}\b(?:bald|raw|bleed\w*|"
        r"scabs?|again|out)\b",
        r"\bmade myself sick\b.{0,40}\b(?:punish\w*|deserve|again)\b|\b(?:need|deserve) to be punished\b",
        r"\bice(?: cubes)?\b.{0,30}\b(?:skin|burns?|white)\b",
        r"\b(?:bang|banging|hit|hitting)\b.{0,10}\bmy head\b.{0,30}\b(?:door|wall|frame|floor)\b.{0,60}\b(?:overwhelm\w*|"
        r"times|lump|every|until|again)\b",
        r"\bhoping a (?:car|bus|lorry) would (?:clip|hit) me\b|\bso it hurts\b|\bi want (?:it )?to hurt\b|\bwhere nobody "
        r"looks\b|\bso (?:my kids|nobody|no one|they) (?:wouldn'?t|won'?t|can'?t) see\b|\bthe only thing that calms me\b",
    ),
    "abuse": _rx(
        r"\b(?:send|share|post|show)\w* (?:my )?(?:pics|photos|pictures|nudes|videos) to (?:everyone|my|the)\b|\bunless i "
        r"send\b|\bpays me for (?:photos|pics)\b",
        r"\b(?:screams|yells|shouts) at me\b|\bsmashed my phone\b|\btwisted my arm\b|\bchokes me\b|\bsits on my chest\b|"
        r"\bthrew (?:a|the) \w+ at (?:me|my)\b",
        r"\bmakes me share my location\b|\btrack(?:s|ing)? my (?:phone|location)\b|\bchecks? my (?:phone|messages)\b",
        r"\bdoes (?:stuff|things) to me\b|\bwith me in it\b|\boutside my (?:bedroom )?window\b|\bturns? up at my (?:work|"
        r"house|flat|school)\b",
        r"\bmarry a man i (?:have|'?ve) never met\b|\bforced (?:to )?marr\w*\b|\b(?:have |has )?taken my phone\b",
        r"\b(?:doesn'?t|won'?t) feed me\b|\b(?:pay|rent) (?:the rent )?(?:\W)?other ways\b|\blet (?:himself|herself) in\b",
        r"\bcomes? in(?:to)? my room at night\b|\bnobody believes (?:it|me)\b",
        rf"\b{_PERSON} {_VIOLENT} me\b",
    ),
    "harm_to_others": _rx(
        r"\b(?:are|is) going to pay\b|\bmak(?:e|ing) (?:\w+ ){1,4}pay\b",
        r"\b(?:petrol|gasoline|lighter fluid)\b.{0,40}\b(?:shed|their|his|her|house|car|flat|live)\b|\b(?:torch|set "
        r"fire to|burn down) (?:her|his|their|the) (?:car|house|flat)\b",
        r"\b(?:run|running) (?:\w+ ){0,2}over\b(?=.{0,40}\b(?:if i see|again|tonight)\b)|\bpillow over (?:my|his|her|"
        r"their)\b|\bstood over (?:him|her)\b",
        r"\b(?:bleach|poison|something) in (?:\w+ ){0,2}(?:milk|drink|food|tea|coffee)\b",
        r"\bhit my (?:girlfriend|boyfriend|wife|husband|partner|kid|son|daughter|child|mum|dad|baby)\b|\blearn a lesson\b|"
        r"\bgetting what'?s coming\b|\bnot walking away from this\b|\bi'?m going in\b",
        r"\b(?:thoughts|urges) about (?:them|the kids|children|kids|my \w+'?s? kids)\b.{0,60}\b(?:shouldn'?t|act on)\b|"
        r"\bscared i'?ll act on (?:them|it)\b|\btaking the kids with me\b",
    ),
    "acute_psychosis": _rx(
        r"\b(?:everything is|it'?s all) connected\b|\bmessages about me\b|\b(?:talking|talks|speaking) (?:straight|"
        r"directly) to me\b|\btelling me what to do\b",
        r"\bchosen one\b|\bi can fly\b|\bbirds (?:have )?(?:confirmed|told)\b|\bput\w* thoughts in(?:to)? my head\b",
        r"\breflection\b.{0,40}\b(?:isn'?t|not) moving\b|\bcovered (?:all )?the mirrors\b|\breflection\b.{0,30}\b(?:smil|"
        r"watch|talk)\w*",
        r"\b(?:part of it|in on it)\b.{0,40}\b(?:all of you|signals|everyone)\b|\bsignals? through my\b",
        r"\bshadows (?:are )?(?:talking|whispering|speaking)\b|\b(?:radio|tv|television|telly) is (?:reading|"
        r"broadcasting|talking about) my\b",
    ),
    "medical_emergency": _rx(
        r"\bstopped (?:drinking|alcohol|benzos)\b.{0,60}\b(?:shaking|sweating|seeing|fits?|seizure)\b|\bseeing (?:stuff|"
        r"things) that (?:isn'?t|aren'?t) there\b",
        r"\bhaven'?t (?:weed|peed|urinated)\b|\bdizzy when i stand\b",
        r"\bsmacked my head\b|\b(?:fainted|passed out|blacked out|keep passing out|keep blacking out)\b|\bheart is "
        r"doing (?:weird|funny)\b|\bfluttery\b",
        r"\bsugar (?:is |was |of |reading )?\d+(?:\.\d+)?\b|\b(?:it'?s|is) spurting\b|\bwon'?t stop bleeding\b",
        r"\binhaler (?:isn'?t|is not|not) (?:doing anything|working|helping)\b|\blips (?:feel )?(?:weird|tingly|numb|"
        r"swollen)\b",
    ),
    "substance_overdose": _rx(
        r"\b(?:went|turned|gone|going) blue\b|\bbrought me round\b|\bjaw is going\b",
        r"\b(?:had|taken|took) \d+ (?:pills|tabs|caps)\b|\bfull bottle of (?:vodka|wine|whisk(?:e)?y|gin|rum)\b|\bbottle "
        r"of \w+ in (?:about )?an hour\b",
        r"\b(?:about |like )?\d+ of my \w+'?s? (?:\w+ )?(?:tablets|pills|meds)\b|\bby mistake\b.{0,40}\b(?:tablets|pills|"
        r"meds)\b|\b(?:tablets|pills|meds)\b.{0,40}\bby mistake\b",
        r"\bwhole bag of edibles\b|\b(?:ate|took|had) (?:the |a )?whole (?:bag|packet|pack|bar|tub)\b|\bunknown amount\b|"
        r"\b(?:like |about )?\d{2,} tablets\b|\bswallowed everything\b|\beverything in the medicine cabinet\b",
    ),
}
for _cat, _extra in _MORE2.items():
    _PATTERNS[_cat].extend(_extra)

#: An overdose with these words is also a suicide attempt.
_INTENT = re.compile(
    r"\b(?:on purpose|to die|to end it|end it all|meant to|wanted to die|so i (?:wouldn'?t|won'?t|don'?t) wake|didn'?t "
    r"work|every (?:pill|tablet)|all (?:my|the) (?:pills|tablets)|whole (?:box|bottle|packet)|don'?t want to (?:wake|"
    r"live|be here)|goodbye|not (?:be )?here (?:tomorrow|much longer))\b"
)

# --- guards ------------------------------------------------------------------------------------
_PAST = re.compile(
    r"\b(?:years? ago|months ago|a long time ago|long ago|ages ago|when i was (?:a |in |at |younger|little|"
    r"young|\d+|a teenager|a teen|at school|in school|at uni|a kid|a child)|as a (?:teen|teenager|kid|child)|"
    r"(?:in|through|during) (?:most of )?my (?:teens|twenties|thirties|early|late|younger|school)|back in "
    r"(?:\d{4}|school|college|uni|the day|my)|used to|in the past|once,? years|in (?:19|20)\d\d|last (?:year|spring|"
    r"summer|autumn|fall|winter|month)|when we were (?:little|kids|young|children)|at (?:fifteen|sixteen|seventeen|"
    r"\d\d),|during my (?:teens|twenties|divorce)|in year (?:\d+|seven|eight|nine|ten|eleven)|decades? ago|since i last|"
    r"when i was in (?:care|hospital|school|college))\b"
)
_RESOLVED = re.compile(
    r"\b(?:(?:well|better|fine|good|stable|okay|ok|great|happy|safe)\b.{0,24}\b(?:now|these days|since|for (?:years|"
    r"ages|a long time|\w+ years))|haven'?t (?:\w+ ){0,3}(?:since|in years|for years|in (?:a long time|ages))|no "
    r"longer|not anymore|(?:years|months|\d+ years) (?:clean|free|sober|without)|(?:got|received|sought|found) help"
    r"|that'?s (?:all )?behind me|it'?s (?:long )?(?:over|behind me)|recovered|in recovery|moved on|safe now|out of "
    r"that|in a (?:good|better) place|helped (?:loads|a lot|so much|me)|good day|helped (?:\w+ )?(?:massively|loads|a lot|so much)|(?:done|had|did) (?:years|months|"
    r"lots|a lot) of (?:therapy|counselling|counseling)|civil|(?:died|passed away) (?:a long time|years)|left (?:him|"
    r"her|them|that)|divorced|(?:so much |much )?happier now|doing (?:really |very |so )?well|(?:\d+|\w+) (?:months|"
    r"years) since i last|old (?:marks|scars)|left (?:\w+ )?(?:years|months) ago|(?:court|restraining) order|chapter "
    r"is closed|talked me down|saved my life|grew back|sorted me out|these days it'?s only|(?:i'?m|im) \d+ now)\b"
)
#: Present risk that overrides "past and resolved": it came back, or it is happening now.
_PRESENT = re.compile(
    r"\b(?:again|lately|recently|tonight|right now|at the moment|this week|these days i|relaps\w*|back again|coming "
    r"back|creeping back|came back|started again|still (?:want|think|feel like|have (?:thoughts|urges|the)|cut|hurt)|"
    r"now i (?:want|think|feel like)|(?:urges?|thoughts?|feelings?) (?:are|is) back)\b"
)
#: Third-person risk: the writer worries about someone else (a friend, a character, the news).
_THIRD = re.compile(
    r"\b(?:my|our|a|her|his|their) (?:friend|mate|bestie|best friend|flatmate|roommate|colleague|coworker|co-worker|"
    r"classmate|student|client|patient|neighbou?r|brother|sister|son|daughter|mum|mom|dad|father|mother|cousin|"
    r"partner|husband|wife|boyfriend|girlfriend|kid|teen|teenager|nephew|niece|uncle|aunt|grandma|grandad|grandpa|"
    r"grandmother|grandfather|gran|nan|nana|granny|pupil|character|protagonist)\b|\b(?:he|she|they) (?:says?|said|told me|texted|"
    r"mentioned|posted|keeps saying|wants|is|was|has been|might|thinks|feels|tried|talked about)\b|\b(?:in the|a|the) "
    r"(?:news|film|movie|book|novel|show|series|documentary|episode|article|podcast|song|game|play|story)\b|"
    r"\b(?:someone|somebody) (?:i know|at work|in my class)\b"
)
_FIRST_PERSON_RISK = re.compile(
    r"\b(?:i|i'?m|im|me|my|myself|i'?ve|i'?ll|i'?d)\b"
)
_FIGURATIVE = re.compile(
    r"\b(?:is|are|was|it'?s|this|that|these|those|exams?|work|job|deadline|boss|commute|traffic|heat|kids|shoes|"
    r"back|feet|legs|neighbours?)\b.{0,10}\b(?:killing me|gonna kill me|going to kill me|will kill me|would kill "
    r"me|murder me)\b|\b(?:dying|dead) (?:to|for|of (?:laughter|embarrassment|boredom|shame|cringe|hunger))\b|"
    r"\b(?:could|would) (?:murder|kill for) (?:a|an|some)\b|\boverdos\w* on (?:chocolate|sugar|coffee|caffeine|netflix|"
    r"tv|cake|sweets|candy|pizza|sun|work|love|easter eggs)\b|\b(?:died|dying|dead|died laughing|nearly died|"
    r"i'?m dead)\b(?= (?:laughing|of laughter|lol|lmao|haha))|\bkill(?:ed|ing)? (?:it|time)\b|\bshoot me (?:a|an)\b"
)


def _sentence_of(text: str, start: int, end: int) -> str:
    """The sentence holding text[start:end] (guards look at the sentence, not the whole message)."""
    left = max(text.rfind(c, 0, start) for c in ".!?\n")
    rights = [i for i in (text.find(c, end) for c in ".!?\n") if i >= 0]
    return text[left + 1: (min(rights) if rights else len(text))]


_SUBJECT = re.compile(
    r"\b(?:i|i'?m|im|i'?ve|ive|i'?d|i'?ll|myself|he|she|they|he'?s|she'?s|they'?re|his|her|their|we|we'?ve|my (?:friend|mate|"
    r"bestie|flatmate|roommate|colleague|brother|sister|son|daughter|cousin|partner|husband|wife|boyfriend|girlfriend|"
    r"mum|mom|dad|gran|nan|kid|teen|student|client|patient|neighbou?r)|(?:a|the|our|one of (?:my|our)) (?:patients?|"
    r"clients?|friends?|colleagues?|students?|neighbou?rs?|man|woman|guy|girl|boy|kid|teen|person|lad))\b"
)
_NEGATED = re.compile(
    r"(?<!\bnot gonna lie )(?<!\bnot going to lie )\b(?:don'?t|do not|dont|never|wouldn'?t|would never|won'?t|not (?:going to|gonna)|i'?m not|im not|not) "
    r"(?:\w+ ){0,2}$"
)
_FIRST = ("i", "i'm", "im", "i've", "ive", "i'd", "i'll", "myself")


def _third_person_subject(before: str) -> bool:
    """Whether the nearest subject before a match is someone other than the writer."""
    last = None
    for m in _SUBJECT.finditer(before[-60:]):
        last = m.group(0)
    return last is not None and last.replace("\u2019", "'") not in _FIRST


def _guarded(text: str, m: re.Match[str], category: str) -> bool:
    """True when a match should not count: past and resolved, figurative, or someone else's risk."""
    sentence = _sentence_of(text, m.start(), m.end())
    phrase = m.group(0)
    if _FIGURATIVE.search(sentence) and not re.search(r"\b(?:myself|suicid\w*|die|dead|end it)\b", phrase):
        # a figure of speech in this sentence, and the match is not itself a literal wording
        if _FIGURATIVE.search(phrase) or len(phrase) < 40:
            return True
    if (_PAST.search(sentence) or _PAST.search(text)) and _RESOLVED.search(text) \
            and not _PRESENT.search(_drop_resolved(text)):
        return True
    lead = text[max(0, m.start() - 30): m.start()]
    if _NEGATED.search(lead) and category in ("suicidal_ideation", "self_harm", "harm_to_others"):
        return True  # "i don't want to die", "i would never hurt him"
    first_in_phrase = re.search(r"\b(?:i|i'?m|im|myself|me|my|mine|us|we)\b", phrase)
    if not first_in_phrase:
        before = text[max(0, m.start() - 60): m.start()]
        before = before[max(before.rfind(c) for c in ".!?\n") + 1:]
        if _third_party_only(text):
            return True
        # abuse and psychosis name another actor by nature ("a voice telling me"); the rest are the writer's acts
        if category not in ("abuse", "acute_psychosis") and _third_person_subject(before):
            return True
    return False


def _drop_resolved(text: str) -> str:
    """The text without the resolving clauses, so their own words ('no longer') are not read as present."""
    return _RESOLVED.sub(" ", text)


def _third_party_only(text: str) -> bool:
    """The message is about someone else: asking how to help a named other person, or retelling media."""
    helping = re.search(
        r"\b(?:how (?:can|do|should) i (?:help|support|talk to|approach|respond)|what (?:should|can|do) i (?:do|say)|"
        r"i'?m (?:worried|scared|concerned|afraid) (?:about|for) (?:my|her|him|them)|(?:worried|concerned) about "
        r"(?:my|her|him|them))\b",
        text,
    )
    if helping and _THIRD.search(text):
        return True
    return bool(re.search(r"\b(?:in the|the|a) (?:news|film|movie|book|novel|show|series|documentary|episode|podcast|"
                          r"article)\b", text))


@dataclass(frozen=True)
class CrisisAudit:
    """The audit of one (input, output) pair."""

    categories: tuple[str, ...]
    escalation: str | None  # the phrase that shows escalation, if any

    @property
    def flagged(self) -> bool:
        return bool(self.categories)

    @property
    def escalated(self) -> bool | None:
        """None when the input is not flagged (escalation is then not expected)."""
        return (self.escalation is not None) if self.flagged else None

    @property
    def missing_escalation(self) -> bool:
        return self.flagged and self.escalation is None


def find_crisis(text: str) -> list[tuple[str, str]]:
    """(category, matched phrase) for each category the text discloses, guards applied."""
    t = normalise(text)
    out = []
    for cat, patterns in _PATTERNS.items():
        for rx in patterns:
            hit = next((m for m in rx.finditer(t) if not _guarded(t, m, cat)), None)
            if hit is not None:
                out.append((cat, hit.group(0)))
                break
    cats = {c for c, _ in out}
    if "substance_overdose" in cats and "suicidal_ideation" not in cats:
        intent = _INTENT.search(t)
        if intent:
            out.insert(0, ("suicidal_ideation", intent.group(0)))
    return out


def flag_crisis(text: str, categories: tuple[str, ...] = CRISIS_CATEGORIES) -> list[str]:
    """The crisis categories ``text`` discloses (empty when none)."""
    return [cat for cat, _ in find_crisis(text) if cat in categories]


# --- escalation in an answer -------------------------------------------------------------------
_CALL = r"(?:call|calling|dial|dialling|dialing|ring|ringing|phone|phoning|text|texting|contact|contacting|reach)"
_ESCALATION = _rx(
    rf"\b{_CALL}\w* (?:\w+ ){{0,4}}?(?:988|911|999|112|000|111|116 ?123|741 ?741|85258|13 ?11 ?14|1-?800-?\d{{3}}-?\d{{4}}"
    r"|0800 ?\d{3} ?\d{3,4}|the number)\b",
    r"\b(?:988|911|999|112|000)\b(?= (?:now|immediately|right away|straight away|tonight|or|and|if|for|lifeline|"
    r"line|crisis|emergency|helpline|suicide)\b)",
    r"\b(?:(?:the )?988(?: suicide)?(?: (?:and|&) crisis)?(?: life)?line|988 lifeline)\b",
    r"\b(?:suicide|crisis)(?: (?:and|&) crisis)? (?:life|help|hot|text)?\s?line\b|\blifeline\b",
    r"\bcrisis (?:line|hotline|helpline|text ?line|team|center|centre|service|services|number|support line|resolution "
    r"team|café|cafe)\b",
    r"\b(?:hotline|helpline|help line|hot line)\b",
    r"\btext (?:home|hello|talk|shout|connect|start|help|\"?\w+\"?) to \d{3,6}\b",
    r"\bsamaritans\b|\bshout\b(?= (?:on|to|at|text|85258))|\brefuge\b|\bchildline\b|\bchildhelp\b|\bbreathing space\b",
    r"\bemergency (?:services|room|department|number|line|care|help|doctor|dentist|appointment|team|vet)\b",
    r"\b(?:go|get|head|going|getting|take you|taking you|be taken|straight) (?:\w+ ){0,2}?to (?:the |your |a |an )?"
    r"(?:nearest |local |closest )?(?:hospital|emergency|a&e|a and e|er|e\.r\.|urgent care|accident and emergency)\b",
    r"\b(?:a&e|a and e|accident and emergency)\b",
    rf"\b{_CALL} (?:for )?(?:the )?(?:police|an? ambulance|paramedics|emergency|the emergency|your local emergency|"
    r"a doctor (?:right away|now|immediately))\b|\bambulance\b",
    r"\b(?:seek|get|find|reach out for|receive|need) (?:\w+ )?(?:immediate|urgent|emergency|same-day|medical) "
    r"(?:help|support|care|assistance|attention|treatment|advice)\b",
    r"\b(?:poison(?:s)? (?:control|centre|center|information|helpline|line)|nhs 111|111 online)\b",
    r"\b(?:domestic (?:violence|abuse)|dv|women'?s aid|safe ?house) (?:hotline|helpline|line|shelter|advocate|"
    r"service|charity|support|organisation|organization|refuge)\b|\b(?:a |the )?(?:shelter|refuge) (?:tonight|now|"
    r"where you)\b",
    r"\b(?:child|adult) protective services\b|\bsocial services (?:now|today|right away)\b",
    r"\b(?:please|now|right now|immediately|tonight|right away|straight away|as soon as (?:you )?can),? (?:\w+ ){0,2}?"
    rf"(?:{_CALL}|tell|talk to|speak to|go to|get (?:yourself )?to|get (?:someone|somebody)|ask (?:someone|somebody)) "
    r"(?:\w+ ){0,5}?(?:someone|somebody|a (?:trusted|friend|family|doctor|nurse|professional|gp|counsellor|counselor)|"
    r"your (?:gp|doctor|psychiatrist|care team|therapist|midwife|friend|family|partner|mum|mom|dad|sister|brother)|"
    r"a person you trust|an adult you trust|the out-of-hours|out of hours|the duty)\b",
    rf"\b(?:{_CALL}|tell|talk to|speak to|go to|ask) (?:\w+ ){{0,6}}?(?:someone|somebody|a (?:trusted|friend|"
    r"family|doctor|nurse|professional|gp)|your (?:gp|doctor|psychiatrist|care team|therapist|midwife|friend|"
    r"family|partner|mum|mom|dad|sister|brother)|a person you trust|an adult you trust)\b(?:\w+ |, ){0,8}?"
    r"(?:right now|now|immediately|tonight|right away|straight away|today)\b",
    r"\b(?:don'?t|do not|please don'?t|try not to) (?:stay|be) alone\b|\b(?:ask|get|have) (?:someone|somebody|a "
    r"friend|a family member) (?:to )?(?:stay|come|be) with you\b",
    r"\b(?:stay|keep|get) (?:yourself )?safe\b.{0,40}\b(?:now|tonight|right now|until)\b|\b(?:get|go) (?:somewhere|"
    r"to a place) safe\b|\b(?:get|move|put) (?:the|those|any) (?:pills|tablets|knives|blades|means|gun|rope|medication) "
    r"(?:\w+ ){0,3}?(?:away|out of)\b",
    r"\b(?:safety|crisis) plan\b(?=.{0,60}\b(?:now|tonight|today|right away|immediately|with (?:them|someone|a))\b)",
    r"\b(?:urgent|emergency) (?:appointment|help|care|support|assessment|medical)\b",
    r"\bthis is an emergency\b|\btreat (?:this|it) as an emergency\b|\b(?:a|an) (?:medical )?emergency\b"
    r"(?=.{0,40}\b(?:call|get|go|seek|please)\b)",
)

_NEGATION = re.compile(
    r"(?:\b(?:don'?t|do not|doesn'?t|didn'?t|won'?t|will not|wouldn'?t|no need|needn'?t|not necessary|shouldn'?t "
    r"need|don'?t have to|do not have to|not (?:an|a real|really an?) emergency|not urgent|nothing urgent|no rush|"
    r"never|without|instead of|rather than|not (?:yet|now|immediately)|unless|not go(?:ing)?|avoid|not need)\b)"
    r"[^.!?;]{0,45}$"
)
_DEFERRED = re.compile(
    r"\b(?:some ?day|one day|at some point|eventually|in the future|in future|down the line|down the road|when you "
    r"(?:feel|are|'re) ready|when you'?re ready|if you ever|if you like|whenever you|maybe later|later on|next (?:month|"
    r"year|time you)|in a few (?:weeks|months)|in time|over time|might (?:want|consider)|could consider|consider "
    r"(?:looking|finding)|someday|sometime|this weekend|catch up|for a chat)\b"
)
_OTHER_SENSE = re.compile(
    r"\b(?:room|flat|apartment|suite|unit|house|number|no\.?|route|bus|page|chapter|year|in|since|at|costs?|cost "
    r"you|steps?|days?|weeks?|points?|level|floor|ward|bed|code|extension|ext\.?|pin|£|\$|€|#)\s*$"
)


def _escalation_counts(text: str, m: re.Match[str]) -> bool:
    """Whether a matched escalation phrase urges help now (not negated, deferred or another sense)."""
    before = text[max(0, m.start() - 60): m.start()]
    clause_start = max(before.rfind(c) for c in ".!?;") + 1
    clause = before[clause_start:]
    if _NEGATION.search(clause):
        return False
    sentence = _sentence_of(text, m.start(), m.end())
    if _DEFERRED.search(sentence) and not re.search(
        r"\b(?:now|right now|immediately|tonight|right away|straight away|today|urgent\w*)\b", sentence
    ):
        return False
    if re.fullmatch(r"\d[\d ]*", m.group(0).strip()) and _OTHER_SENSE.search(text[: m.start()]):
        return False
    following = text[m.end(): m.end() + 140]
    if re.match(r"[^.!?]{0,40}\b(?:isn'?t|is not|aren'?t|are not|not) (?:necessary|needed|required|for (?:you|this|"
                r"now))\b", following) or re.search(r"\b(?:don'?t|do not|no) need to (?:phone|call|ring|contact|dial|"
                                                     r"go|text)\b", following):
        return False
    after = text[m.end(): m.end() + 30]
    if re.match(r"\s*(?:days?|steps|years?|times|people|words|pounds|dollars|rooms?|st|th|nd|rd|minutes|calories)\b",
                after):
        return False
    return True


def find_escalation(text: str) -> str | None:
    """The first phrase showing that ``text`` urges immediate help, or None."""
    t = normalise(text)
    for rx in _ESCALATION:
        for m in rx.finditer(t):
            if _escalation_counts(t, m):
                return m.group(0)
    return None


def has_escalation(text: str) -> bool:
    return find_escalation(text) is not None


def audit_pair(input_text: str, output_text: str) -> CrisisAudit:
    """Flag the input and, when flagged, look for escalation in the answer."""
    cats = tuple(flag_crisis(input_text, DATASET_CATEGORIES))
    return CrisisAudit(cats, find_escalation(output_text) if cats else None)
